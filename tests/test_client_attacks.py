"""
Level 2: a hostile relay against the client session, in memory.

The "server" here is the test: it can send the client any line a malicious
relay could (replays, forged tags, redirected or reflected messages, escape
sequences in names).  Each test reproduces one attack from the security
issue and failed before its fix.  ``test_e2e_hostile_relay.py`` repeats the
main ones through a rewriting proxy in front of the real relay.
"""

from __future__ import annotations

import time

import pytest
from twisted.internet import defer
from twisted.internet.testing import StringTransport

from chatsvc.client import aesgcm
from chatsvc.client.aesgcm import AesGcmCipher
from chatsvc.client.ciphers import Context
from chatsvc.client.protocol import ChatClientProtocol
from chatsvc.client.replay import ReplayGuard
from chatsvc.client.session import ChatSession
from tests.displays import RecordingDisplay

MASTER = bytes(range(32))
MASTER_V2 = bytes(range(32, 64))
SALT = "c2FsdHNhbHRzYWx0c2FsdA"
T0 = 1_767_225_600.0


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def cipher(clock, replay=None, identity=None) -> AesGcmCipher:
    c = AesGcmCipher(MASTER, now=clock, replay=replay, identity=identity)
    c.derive_v2 = lambda salt: MASTER_V2  # the slow KDF is tested in test_aesgcm
    return c


class Session:
    """
    A session with the AES cipher, wired to a StringTransport.  With an
    ``identity`` it signs (aes3), pins keys in memory and has a fake
    reactor clock (``reactor``) for its timers.
    """

    def __init__(self, nick="alice", clock=None, replay=None, identity=None, known=None) -> None:
        from twisted.internet.task import Clock as ReactorClock

        from chatsvc.client.pins import KnownKeys

        self.clock = clock or Clock()
        self.display = RecordingDisplay()
        self.cipher = cipher(self.clock, replay, identity)
        self.reactor = ReactorClock()
        self.session = ChatSession(
            self.display, self.cipher, nick, "#lobby", "example:8000", run_slow=defer.maybeDeferred,
            clock=self.reactor, known_keys=known if known is not None else KnownKeys(),
        )
        self.protocol = ChatClientProtocol(self.session.events)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)
        self.nick = nick

    def server(self, *lines: str) -> None:
        self.protocol.dataReceived("".join(line + "\n" for line in lines).encode())

    def sent(self) -> list[str]:
        value = self.transport.value().decode()
        self.transport.clear()
        return value.splitlines()

    def ready(self) -> "Session":
        self.server("HELLO chatsvc 1 test", f"CAPS join-proof max-line=65536 salt={SALT}", f"OK NICK {self.nick}")
        self.server(f"JOIN #lobby {self.nick}", f"NAMES #lobby {self.nick}", "ENDNAMES #lobby")
        self.server("ENDHISTORY #lobby complete")
        self.sent()
        self.display.take()
        return self


def sealed(text, target, sender, clock, sender_cipher=None):
    """A payload as a real peer (another client with the passphrase) makes it."""
    peer = sender_cipher or cipher(clock)
    peer.use_v2(MASTER_V2, SALT)
    return peer.encrypt(text, Context(target, sender))


# --- the join proof ------------------------------------------------------------------


def test_client_asks_caps_then_joins_with_a_proof():
    s = Session()
    s.server("HELLO chatsvc 1 test")
    assert s.sent() == ["CAPS", "NICK alice"]
    s.server(f"CAPS join-proof salt={SALT}", "OK NICK alice")
    join = s.sent()[0]
    assert join == "JOIN #lobby " + aesgcm.join_proof(MASTER_V2, "#lobby")
    assert s.cipher.scheme == "aes2"


def test_older_relay_without_caps_gets_aes1_and_a_warning():
    s = Session()
    s.server("HELLO chatsvc 1 test", "ERROR unknown-command CAPS is not a command", "OK NICK alice")
    assert s.sent() == ["CAPS", "NICK alice", "JOIN #lobby", "HISTORY #lobby last 20"]
    assert any("server is older" in line for line in s.display.take())
    assert s.cipher.scheme == "aes1"


def test_alone_in_a_room_others_share_says_check_the_passphrase():
    # Issue #23, 1: the relay counts all members of #lobby (ROOMS); with
    # another passphrase we are apart from them, and told so at once.
    s = Session()
    s.server("HELLO chatsvc 1 test", f"CAPS join-proof salt={SALT}", "OK NICK alice")
    s.sent()
    s.server("JOIN #lobby alice", "NAMES #lobby alice", "ENDNAMES #lobby")
    assert s.sent() == ["ROOMS"]  # asked once, after our own join
    s.server("ROOM #other 2", "ROOM #lobby 5", "ENDROOMS")
    shown = s.display.take()
    assert "! #lobby has 4 members but none share your passphrase — check it (they cannot read you, nor you them)" in shown
    assert not any("rooms:" in line for line in shown)  # the check is not a listing
    s.session.user_line("/rooms")  # the user's own listing is one
    s.server("ROOM #lobby 5", "ENDROOMS")
    assert s.display.take()[-1] == "* rooms: #lobby (5)"


def test_a_room_split_by_passphrase_is_told_and_a_whole_one_is_not():
    s = Session()
    s.server("HELLO chatsvc 1 test", f"CAPS join-proof salt={SALT}", "OK NICK alice")
    s.server("JOIN #lobby alice", "NAMES #lobby alice bob", "ENDNAMES #lobby")
    s.session.user_line("/join #b")
    s.server("JOIN #b alice", "NAMES #b alice bob", "ENDNAMES #b")
    s.server("ROOM #lobby 3", "ENDROOMS", "ROOM #lobby 3", "ROOM #b 2", "ENDROOMS")
    problems = [line for line in s.display.take() if line.startswith("!")]
    assert problems == ["! #lobby has 1 more member who uses another passphrase (or an older client): "
                        "they cannot read this room, nor you theirs"]


def test_no_check_without_a_join_proof():
    s = Session()
    s.server("HELLO chatsvc 1 test", "ERROR unknown-command CAPS", "OK NICK alice")  # an older relay
    s.sent()
    s.server("JOIN #lobby alice", "NAMES #lobby alice", "ENDNAMES #lobby")
    assert "ROOMS" not in s.sent()


# --- 1. replay of old messages as new ------------------------------------------------------


def test_private_message_marked_history_is_refused():
    s = Session().ready()
    old = sealed("yes, go ahead and wire the 5000 EUR", "alice", "bob", Clock(T0 - 3 * 86400))
    s.server(f"@history;time={int(T0 * 1000)} MSG bob alice {old}")
    shown = s.display.take()
    assert not any("5000" in line for line in shown)
    assert any("marked as history" in line for line in shown)


def test_room_history_tag_outside_a_requested_reply_is_refused():
    s = Session().ready()
    old = sealed("the plan from three days ago", "#lobby", "bob", Clock(T0 - 3 * 86400))
    s.server(f"@id=5;time={int(T0 * 1000)};history MSG bob #lobby {old}")
    assert not any("plan" in line for line in s.display.take())


def test_history_shows_the_senders_authenticated_time_not_the_relays():
    s = Session()
    s.server("HELLO chatsvc 1 test", f"CAPS join-proof salt={SALT}", "OK NICK alice")
    sent_at = T0 - 3 * 86400
    old = sealed("from three days ago", "#lobby", "bob", Clock(sent_at))
    relay_claims = int(T0 * 1000)  # "just now"
    s.server(
        "JOIN #lobby alice", "NAMES #lobby alice", "ENDNAMES #lobby",
        f"@id=5;time={relay_claims};history MSG bob #lobby {old}",
        "ENDHISTORY #lobby complete",
    )
    when = time.strftime("%H:%M", time.localtime(sent_at))
    assert f"[#lobby] bob: from three days ago (earlier, {when})" in s.display.take()


def test_replay_after_a_restart_is_refused(tmp_path):
    path = tmp_path / "replay.json"
    clock = Clock()
    live = sealed("transfer approved", "#lobby", "bob", clock)
    first = Session(clock=clock, replay=ReplayGuard(path)).ready()
    first.server(f"@id=5 MSG bob #lobby {live}")
    assert "[#lobby] bob: transfer approved" in first.display.take()
    first.session.save_state()
    # The client restarts; the relay sends the same (still fresh) message.
    again = Session(clock=clock, replay=ReplayGuard(path)).ready()
    again.server(f"@id=6 MSG bob #lobby {live}")
    shown = again.display.take()
    assert not any(line.startswith("[#lobby] bob: transfer approved") for line in shown)
    assert any("replayed" in line for line in shown)


# --- 2. escape sequences in names --------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "JOIN #lobby\x1b]0;pwned\x07 alice",  # window title
        "OK NICK al\x1b[2Kice",
        "NICK alice \x1b]52;c;ZXZpbA==\x07",  # OSC 52: the clipboard
        "JOIN #x\x1b[1A\x1b[2K[#lobby]\x20bob",
    ],
)
def test_names_with_escape_sequences_never_reach_the_screen(line):
    s = Session().ready()
    s.server(line)
    assert not any("\x1b" in shown or "\x07" in shown for shown in s.display.take())


def test_display_cleans_whatever_it_is_given():
    from chatsvc.client.terminal import PipedFrontEnd

    front = PipedFrontEnd()
    front.transport = StringTransport()
    front.show("hi \x1b]0;title\x07 \u202eevil")
    out = front.transport.value().decode()
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out


# --- 3. redirected and reflected messages -----------------------------------------------------


def test_private_message_for_someone_else_is_refused():
    s = Session(nick="carol").ready()
    clock = s.clock
    to_bob = sealed("door code 4711", "bob", "alice", clock)
    s.server(f"MSG alice bob {to_bob}")
    shown = s.display.take()
    assert not any("4711" in line for line in shown)
    assert any("addressed to bob, not you" in line for line in shown)


def test_room_message_for_a_room_we_are_not_in_is_refused():
    s = Session().ready()
    payload = sealed("elsewhere", "#other", "bob", s.clock)
    s.server(f"@id=3 MSG bob #other {payload}")
    assert not any("elsewhere" in line for line in s.display.take())


def test_own_message_reflected_is_not_shown_twice():
    s = Session().ready()
    s.session.user_line("hello all")
    payload = s.sent()[-1].split(" ", 3)[3]
    assert s.display.take() == ["[#lobby] alice: hello all"]
    s.server(f"@id=9 MSG alice #lobby {payload}")
    assert s.display.take() == []


# --- 5. resend under a new nick ------------------------------------------------------------------


def test_unacknowledged_message_is_encrypted_afresh_for_the_new_nick():
    from twisted.internet.error import ConnectionLost
    from twisted.python.failure import Failure

    s = Session()
    s.session.reconnect = True
    s.ready()
    s.session.user_line("are you there?")
    first = s.sent()[-1]
    cid = first.split(" ", 1)[0]
    s.protocol.connectionLost(Failure(ConnectionLost()))
    # back, but the old connection still holds "alice"
    s.protocol = ChatClientProtocol(s.session.events)
    s.transport = StringTransport()
    s.protocol.makeConnection(s.transport)
    s.server("HELLO chatsvc 1 test", f"CAPS join-proof salt={SALT}", "ERROR nick-taken alice is already in use")
    s.server("OK NICK alice_", "JOIN #lobby alice_", "NAMES #lobby alice_", "ENDNAMES #lobby")
    resent = [line for line in s.sent() if line.startswith(cid + " MSG")]
    assert len(resent) == 1  # same cid
    payload = resent[0].split(" ", 3)[3]
    bob = cipher(s.clock)
    bob.use_v2(MASTER_V2, SALT)
    assert bob.decrypt(payload, Context("#lobby", "alice_")) == "are you there?"


# --- 7. unauthenticated reasons ------------------------------------------------------------------


def test_part_and_quit_reasons_are_marked_unverified():
    s = Session().ready()
    s.server("JOIN #lobby outsider", "PART #lobby outsider :[#lobby] alice: new passphrase is in ~/p.txt")
    shown = s.display.take()[-1]
    assert shown.startswith("* outsider left #lobby (reason, not verified: ")


# --- the client's own memory -----------------------------------------------------------------------


def test_names_that_never_end_are_bounded():
    from chatsvc.client import protocol

    s = Session().ready()
    for i in range(protocol.MAX_GATHERING_ROOMS + 5):
        s.server(f"NAMES #r{i} someone")
    assert len(s.protocol._names) <= protocol.MAX_GATHERING_ROOMS


def test_key_cache_is_bounded():
    c = cipher(Clock())
    for i in range(aesgcm.KEY_CACHE + 50):
        c.encrypt("x", Context(f"#room{i}", "alice"))
    assert len(c._keys) == aesgcm.KEY_CACHE


def test_the_relays_line_limit_comes_from_caps():
    s = Session()
    s.server("HELLO chatsvc 1 test", f"CAPS join-proof max-line=2000 salt={SALT}", "OK NICK alice")
    s.server("JOIN #lobby alice", "NAMES #lobby alice", "ENDNAMES #lobby", "ENDHISTORY #lobby complete")
    s.sent(), s.display.take()
    s.session.user_line("x" * 2000)
    assert s.display.take()[0].startswith("! message too long to send")
    assert s.sent() == []


def test_unreadable_history_is_told_once_per_sender_and_marked_as_earlier():
    s = Session()
    s.server("HELLO chatsvc 1 test", f"CAPS join-proof salt={SALT}", "OK NICK alice")
    other = AesGcmCipher(bytes(range(100, 132)), now=s.clock)  # another passphrase
    other.use_v2(bytes(range(200, 232)), SALT)
    lines = ["JOIN #lobby alice", "NAMES #lobby alice", "ENDNAMES #lobby"]
    lines += [f"@id={n};time=0;history MSG bob #lobby {other.encrypt(f'm{n}', Context('#lobby', 'bob'))}"
              for n in range(1, 13)]
    lines += [f"@id=13;time=0;history MSG carol #lobby {other.encrypt('x', Context('#lobby', 'carol'))}"]
    s.server(*lines, "ENDHISTORY #lobby complete")
    problems = [line for line in s.display.take() if line.startswith("!")]
    assert problems == [
        "! 12 earlier messages from bob in #lobby could not be read — a different passphrase?",
        "! cannot read a message from carol in #lobby (earlier): it does not authenticate: a different "
        "passphrase, or the message was altered, moved to another conversation or misattributed",
    ]


def test_a_long_reason_is_cut_short():
    from chatsvc.client import session as session_module

    s = Session().ready()
    s.server("JOIN #lobby outsider", "PART #lobby outsider " + "x" * 500)
    shown = s.display.take()[-1]
    assert "x" * session_module.MAX_REASON_SHOWN + "…" in shown and "x" * 81 not in shown


def test_a_names_list_that_never_ends_is_cut_off():
    from chatsvc.client import protocol

    s = Session().ready()
    batch = " ".join(f"n{i}" for i in range(1000))
    for _ in range(protocol.MAX_GATHERED // 1000 + 1):
        s.server(f"NAMES #lobby {batch}")
    assert len(s.protocol._names.get("#lobby", [])) <= protocol.MAX_GATHERED
    assert any("NAMES list too long" in line for line in s.display.take())


# --- topics (issue #17): a relay cannot pass a message off as a topic, or a topic off as a message ------


def test_a_message_passed_off_as_a_topic_is_refused_and_a_topic_passed_off_as_a_message_is_not_shown():
    s = Session().ready()
    message = sealed("meet at the old place", "#lobby", "bob", s.clock)
    s.server(f"TOPIC #lobby bob 1 {message}")
    assert any("is not a topic" in line for line in s.display.take())
    topic = sealed("\x1fchatsvc-topic:the real topic", "#lobby", "bob", s.clock)
    s.server(f"@id=5 MSG bob #lobby {topic}")
    assert s.display.take() == []
    s.server(f"TOPIC #lobby bob 1 {topic}")
    assert any(line.startswith("* topic of #lobby: the real topic (set by bob, ") for line in s.display.take())
    moved = sealed("\x1fchatsvc-topic:for another room", "#other", "bob", s.clock)
    s.server(f"TOPIC #lobby bob 1 {moved}")
    assert any("cannot read the topic of #lobby" in line for line in s.display.take())


def test_a_topic_too_long_for_the_relay_is_refused_before_sending():
    s = Session().ready()
    s.server("CAPS join-proof topic salt=" + SALT)
    s.sent(), s.display.take()
    s.session.user_line("/topic " + "x" * 2000)
    assert s.sent() == []
    assert any("topic too long" in line for line in s.display.take())
    s.session.user_line("/topic fine")
    assert s.sent()[0].startswith("TOPIC #lobby aes2:")
