"""Level 2: the client protocol and session over a StringTransport."""

from __future__ import annotations

import re

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from chatsvc.client.ciphers import CaesarCipher, Context
from chatsvc.client.protocol import ChatClientProtocol
from chatsvc.client.session import ChatSession
from tests.displays import RecordingDisplay

CAESAR = CaesarCipher(10)


class Harness:
    """A session wired to a protocol on a StringTransport (the 'server')."""

    def __init__(self, interactive=False, nick="alice", room="#lobby"):
        self.display = RecordingDisplay()
        self.session = ChatSession(self.display, CAESAR, nick, room, "example:8000", interactive, clock=Clock())
        self.protocol = ChatClientProtocol(self.session.events)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)
        self.result = []
        self.session.done.addCallback(self.result.append)

    def server(self, *lines: str) -> None:
        self.protocol.dataReceived("".join(line + "\n" for line in lines).encode())

    def sent(self, raw: bool = False) -> list[str]:
        """
        What the client sent since the last call.  Unless raw: without the
        client ids of messages and the history requests that follow each
        JOIN (those have tests of their own below).
        """
        value = self.transport.value().decode()
        self.transport.clear()
        lines = value.splitlines()
        if raw:
            return lines
        return [re.sub(r"^@cid=\S+ ", "", line) for line in lines if not line.startswith("HISTORY ")]

    def ready(self) -> "Harness":
        self.server("HELLO chatsvc 1 test", "OK NICK alice", "JOIN #lobby alice", "NAMES #lobby alice", "ENDNAMES #lobby")
        self.sent()
        self.display.take()
        return self

    def close(self, reason="closed") -> None:
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        self.protocol.connectionLost(Failure(ConnectionDone(reason)))


def test_registration_flow():
    h = Harness()
    h.server("HELLO chatsvc 1 hi there")
    assert h.sent() == ["NICK alice"]
    h.server("OK NICK alice")
    assert h.sent() == ["JOIN #lobby"]
    h.server("JOIN #lobby alice", "NAMES #lobby bob alice", "ENDNAMES #lobby")
    assert h.display.take() == [
        "* connected to example:8000 (hi there)",
        "! warning: the caesar cipher is not secure -- anyone who sees the traffic can read it; "
        "the default cipher, aes, is secure",
        "* you are alice",
        "* you joined #lobby",
        "* in #lobby: bob, alice",
    ]
    assert h.session.ready
    assert h.display.prompt == "[#lobby] "


def test_plain_text_is_encrypted_to_current_room_and_echoed():
    h = Harness().ready()
    h.session.user_line("Sí, hello")
    assert h.sent() == ["MSG #lobby caesar:Cí, rovvy"]
    assert h.display.take() == ["[#lobby] alice: Sí, hello"]


def test_incoming_room_and_private_messages():
    h = Harness().ready()
    h.server("MSG bob #lobby " + CAESAR.encrypt("hi all", Context("#lobby", "bob")))
    h.server("MSG bob alice " + CAESAR.encrypt("psst", Context("alice", "bob")))
    assert h.display.take() == ["[#lobby] bob: hi all", "[bob → you] psst"]


def test_undecryptable_payload_names_the_sender():
    h = Harness().ready()
    h.server("MSG mallory #lobby aes1:QUJD", "MSG eve alice garbage")
    lines = h.display.take()
    assert lines[0].startswith("! cannot read a message from mallory in #lobby: ")
    assert "'aes1'" in lines[0]
    assert lines[1].startswith("! cannot read a message from eve (private): ")


def test_control_characters_from_peers_are_neutralised():
    h = Harness().ready()
    h.server("MSG bob #lobby " + CAESAR.encrypt("\x1b[2Jgotcha\x07", Context("#lobby", "bob")))
    [line] = h.display.take()
    assert "\x1b" not in line and "\x07" not in line
    assert line.endswith("gotcha\N{REPLACEMENT CHARACTER}")


def test_notices():
    h = Harness().ready()
    h.server(
        "JOIN #lobby bob",
        "PART #lobby bob bye",
        "QUIT carol connection lost",
        "NICK dave david",
        "PART #lobby eve",
    )
    assert h.display.take() == [
        "* bob joined #lobby",
        '* bob left #lobby (reason, not verified: "bye")',
        '* carol quit (reason, not verified: "connection lost")',
        "* dave is now known as david",
        "* eve left #lobby",
    ]


def test_server_error_is_one_readable_line():
    h = Harness().ready()
    h.server("ERROR not-in-room you are not in #x")
    assert h.display.take() == ["! you are not in #x"]


@pytest.mark.parametrize(
    "typed, wire",
    [
        ("/join #Other", ["JOIN #Other"]),
        ("/join other", ["JOIN #other"]),
        ("/part", ["PART #lobby"]),
        ("/part #x", ["PART #x"]),
        ("/names", ["NAMES #lobby"]),
        ("/rooms", ["ROOMS"]),
        ("/nick alicia", ["NICK alicia"]),
        ("/msg bob hi there", ["MSG bob caesar:rs drobo"]),
        ("//slash text", ["MSG #lobby caesar:/cvkcr dohd"]),
        ("/QUIT gone", ["QUIT gone"]),
        ("fin", ["QUIT"]),
        ("  FIN  ", ["QUIT"]),
    ],
)
def test_commands_on_the_wire(typed, wire):
    h = Harness().ready()
    h.session.user_line(typed)
    assert h.sent() == wire


@pytest.mark.parametrize(
    "typed, shown",
    [
        ("/frob", "! unknown command /frob; /help lists them"),
        ("/join", "! usage: /join #room"),
        ("/join #bad room", "! usage: /join #room"),
        ("/join #-x", "! #-x is not a valid room name"),
        ("/msg bob", "! usage: /msg nick text"),
        ("/msg #lobby hi", "! /msg is for people; to talk in a room, /join it and type"),
        ("/nick -bad", "! -bad is not a valid nick: it may not start with - or ."),
        ("/nick bad nick", "! bad nick is not a valid nick: nicks have no spaces (1-32 letters, digits, _ - .)"),
        ("/nick b@d", "! b@d is not a valid nick: '@' is not allowed (letters, digits, _ - . only)"),
        ("/nick alice\u3164", "! alice\u3164 is not a valid nick: it holds an invisible character"),
        ("/nick " + "x" * 33, "! " + "x" * 33 + " is not a valid nick: at most 32 characters"),
        ("/nick", "! usage: /nick newnick"),
    ],
)
def test_bad_commands_are_explained_locally(typed, shown):
    h = Harness().ready()
    h.session.user_line(typed)
    assert h.sent() == []
    assert h.display.take() == [shown]


def test_help_lists_commands():
    h = Harness().ready()
    h.session.user_line("/help")
    text = "\n".join(h.display.take())
    for command in ("/join", "/part", "/msg", "/names", "/rooms", "/nick", "/help", "/quit", "FIN"):
        assert command in text


def test_join_switches_current_room_on_confirmation():
    h = Harness().ready()
    h.session.user_line("/join #dev")
    h.server("JOIN #dev alice", "NAMES #dev alice", "ENDNAMES #dev")
    assert h.session.current == "#dev"
    assert h.display.prompt == "[#dev] "
    h.session.user_line("/join #LOBBY")  # already in: just switch
    assert h.sent() == ["JOIN #dev"]
    assert h.session.current == "#lobby"


def test_part_current_room_moves_to_another():
    h = Harness().ready()
    h.session.user_line("/join #dev")
    h.server("JOIN #dev alice", "NAMES #dev alice", "ENDNAMES #dev")
    h.server("PART #dev alice")
    assert h.session.current == "#lobby"
    h.server("PART #lobby alice")
    assert h.session.current is None
    h.display.take()
    h.session.user_line("anyone?")
    assert h.display.take() == ["! you are not in a room; /join #room first"]


def test_own_nick_change():
    h = Harness().ready()
    h.server("OK NICK Alicia", "NICK alice Alicia")
    assert h.session.nick == "Alicia"
    assert h.display.take() == ["* you are now known as Alicia"]


def test_rooms_and_names_listing():
    h = Harness().ready()
    h.server("ROOM #a 3", "ROOM #b 1", "ENDROOMS", "ENDROOMS")
    h.server("NAMES #lobby a b", "NAMES #lobby c", "ENDNAMES #lobby")
    assert h.display.take() == ["* rooms: #a (3), #b (1)", "* no rooms", "* in #lobby: a, b, c"]


def test_input_before_ready_is_queued_in_order():
    h = Harness()
    h.session.user_line("first")
    h.session.user_line("/msg bob second")
    h.server("HELLO chatsvc 1 x", "OK NICK alice")
    assert h.sent() == ["NICK alice", "JOIN #lobby"]
    h.server("JOIN #lobby alice", "NAMES #lobby alice", "ENDNAMES #lobby")
    assert h.sent() == ["MSG #lobby caesar:psbcd", "MSG bob caesar:comyxn"]


def test_eof_quits_after_server_has_handled_everything():
    h = Harness()
    h.session.user_line("last words")
    h.session.user_eof()
    h.server("HELLO chatsvc 1 x", "OK NICK alice", "JOIN #lobby alice", "NAMES #lobby alice", "ENDNAMES #lobby")
    sent = h.sent(raw=True)
    cid = re.match(r"@cid=(\S+) MSG #lobby caesar:vkcd gybnc$", sent[-2]).group(1)
    assert sent[-1] == "PING eof-1"
    h.server("PONG eof-1")
    assert h.sent() == []  # the message is not acknowledged yet
    h.server(f"@cid={cid} OK MSG #lobby 7")
    assert h.sent() == ["QUIT"]
    assert h.transport.disconnecting
    h.close()
    assert h.result == [0]


def test_eof_when_ready_pings_first():
    h = Harness().ready()
    h.session.user_eof()
    assert h.sent() == ["PING eof-1"]
    h.server("PONG other")  # not ours
    assert h.sent() == []
    h.server("PONG eof-1")
    assert h.sent() == ["QUIT"]


def test_refused_nick_ends_a_piped_session_with_status_1():
    h = Harness()
    h.server("HELLO chatsvc 1 x", "ERROR nick-taken alice is already in use")
    assert h.display.take()[-1] == "! alice is already in use"
    assert h.sent()[-1] == "QUIT"
    h.close()
    assert h.result == [1]


def test_refused_nick_interactive_can_pick_another():
    h = Harness(interactive=True)
    h.server("HELLO chatsvc 1 x", "ERROR nick-taken alice is already in use")
    assert h.display.take()[-1] == "! choose another nick with /nick NAME"
    h.session.user_line("hello")  # queued until registered
    h.session.user_line("/nick alice2")
    assert h.sent()[-1] == "NICK alice2"
    h.server("OK NICK alice2", "JOIN #lobby alice2", "NAMES #lobby alice2", "ENDNAMES #lobby")
    assert h.sent() == ["JOIN #lobby", "MSG #lobby caesar:rovvy"]


def test_quit_exits_zero_and_ignores_later_input():
    h = Harness().ready()
    h.session.user_line("/quit")
    assert h.sent() == ["QUIT"]
    h.session.user_line("too late")
    assert h.sent() == []
    h.close()
    assert h.result == [0]


def test_unexpected_disconnect_exits_one_with_notice():
    h = Harness().ready()
    h.close("server went away")
    assert h.display.take()[-1].startswith("! connection to example:8000 lost")
    assert h.result == [1]


@pytest.mark.parametrize(
    "line",
    [
        "MSG onlytwo args",
        "OK",
        "HELLO",
        "ROOM #a notanumber",
        "JOIN",
        "\xff\xfe garbage",
        "NAMES",
        "ERROR",
    ],
)
def test_malformed_server_lines_do_not_crash(line):
    h = Harness().ready()
    h.server(line)
    for shown in h.display.take():
        assert shown.startswith("! ")
    h.server("PING x")  # still working
    assert h.sent() == ["PONG x"]


def test_unknown_server_commands_and_tags_are_ignored():
    h = Harness().ready()
    h.server("FUTURE thing", "@id=7 MSG bob #lobby " + CAESAR.encrypt("tagged", Context("#lobby", "bob")))
    assert h.display.take() == ["[#lobby] bob: tagged"]


def test_invalid_utf8_from_server_does_not_crash():
    h = Harness().ready()
    h.protocol.dataReceived(b"MSG bob #lobby caesar:\xff\xfe\n")
    [line] = h.display.take()
    assert line.startswith("[#lobby] bob: ")


def test_reconnect_restores_nick_rooms_and_current_room():
    h = Harness()
    h.session.reconnect = True
    h.ready()
    h.session.user_line("/join #dev")
    h.server("JOIN #dev alice", "NAMES #dev alice", "ENDNAMES #dev")
    h.session.user_line("/join #lobby")  # current room: #lobby again
    h.sent(), h.display.take()
    h.close("gone")
    assert h.result == []  # not over: waiting for the connection to come back
    assert h.display.take() == ["! connection to example:8000 lost: closed by the server; reconnecting"]
    h.session.clock.advance(75)
    h.session.user_line("while away")
    assert h.display.take() == [
        "* not connected: what you type is sent once the connection is back",
        "[#lobby] alice: while away (pending)",
    ]
    # the connection comes back: a new protocol, the same session
    h.protocol = ChatClientProtocol(h.session.events)
    h.transport = StringTransport()
    h.protocol.makeConnection(h.transport)
    h.server("HELLO chatsvc 1 again", "ERROR nick-taken alice is already in use")
    assert h.sent() == ["NICK alice", "NICK alice_"]
    h.server("OK NICK alice_")
    assert sorted(h.sent()) == ["JOIN #dev", "JOIN #lobby"]
    h.server("JOIN #lobby alice_", "JOIN #dev alice_", "NAMES #lobby alice_", "ENDNAMES #lobby")
    assert h.sent() == []  # not ready until back in every room
    h.server("NAMES #dev alice_", "ENDNAMES #dev")
    assert h.sent() == ["MSG #lobby caesar:grsvo kgki"]
    assert h.session.current == "#lobby"
    shown = h.display.take()
    assert shown[:2] == [
        "* reconnected to example:8000 after 1 min 15 s",  # one line when back, how long it was down
        "* you are alice_ (alice was taken meanwhile)",
    ]
    assert not any(line.startswith(("* you joined", "* in #")) for line in shown)  # the rooms are as they were


def test_attempts_that_fail_add_no_lines():
    h = Harness()
    h.session.reconnect = True
    h.ready()
    h.close("gone")
    assert h.display.take() == ["! connection to example:8000 lost: closed by the server; reconnecting"]
    for _ in range(3):  # dialled, connected, dropped before any greeting
        h.protocol = ChatClientProtocol(h.session.events)
        h.transport = StringTransport()
        h.protocol.makeConnection(h.transport)
        h.close("refused")
    assert h.display.take() == []


def test_quit_while_disconnected_ends_at_once():
    h = Harness()
    h.session.reconnect = True
    stopped = []
    h.session.stop_connecting = lambda: stopped.append(True)
    h.ready()
    h.close()
    h.session.user_line("/quit")
    assert h.result == [0]
    assert stopped


def test_drop_before_hello_is_a_connection_failure():
    h = Harness()
    h.session.reconnect = True
    h.close("TLS: the server's certificate is not trusted")
    assert h.display.take() == ["! cannot talk to example:8000: closed by the server"]
    assert h.result == [1]


# --- nothing lost: ids, history, resends ------------------------------------------


def payload_from(sender, room, text):
    return CAESAR.encrypt(text, Context(room, sender))


def test_join_asks_for_recent_history_and_marks_it():
    h = Harness()
    h.server("HELLO chatsvc 1 x", "OK NICK alice")
    assert h.sent(raw=True) == ["NICK alice", "JOIN #lobby", "HISTORY #lobby last 20"]
    h.server(
        "JOIN #lobby alice", "NAMES #lobby alice", "ENDNAMES #lobby",
        "@id=7;time=0;history MSG bob #lobby " + payload_from("bob", "#lobby", "before you came"),
        "ENDHISTORY #lobby complete",
        "@id=7 MSG bob #lobby " + payload_from("bob", "#lobby", "before you came"),  # a duplicate
        "@id=8 MSG bob #lobby " + payload_from("bob", "#lobby", "live"),
    )
    shown = h.display.take()
    assert [line for line in shown if line.startswith("[")] == [
        # Caesar authenticates nothing, so no time is shown (never the relay's)
        "[#lobby] bob: before you came (earlier, time unknown)",
        "[#lobby] bob: live",
    ]
    assert h.session.delivery.last_id == {"#lobby": 8}


def test_messages_carry_client_ids_until_acknowledged():
    h = Harness().ready()
    h.session.user_line("one")
    h.session.user_line("two")
    sent = h.sent(raw=True)
    cids = [re.match(r"@cid=(\S+) MSG #lobby ", line).group(1) for line in sent]
    assert len(set(cids)) == 2
    assert list(h.session.unacked) == cids
    h.server(f"@cid={cids[0]} OK MSG #lobby 41")
    assert list(h.session.unacked) == cids[1:]
    h.server(f"@cid={cids[1]} ERROR store-failed could not save")
    assert h.session.unacked == {}
    assert h.display.take()[-1] == "! a message to #lobby was not delivered: could not save"
    assert h.session.delivery.last_id["#lobby"] == 41


def test_after_a_drop_missed_history_then_resends_then_typed_lines():
    h = Harness()
    h.session.reconnect = True
    h.ready()
    h.server("@id=5 MSG bob #lobby " + payload_from("bob", "#lobby", "seen"))
    h.session.user_line("maybe lost")
    [line] = h.sent(raw=True)
    cid = re.match(r"@cid=(\S+) ", line).group(1)
    h.close()
    h.session.user_line("typed offline")
    h.protocol = ChatClientProtocol(h.session.events)
    h.transport = StringTransport()
    h.protocol.makeConnection(h.transport)
    h.server("HELLO chatsvc 1 x", "OK NICK alice")
    assert h.sent(raw=True) == ["NICK alice", "JOIN #lobby", "HISTORY #lobby after 5"]
    h.display.take()
    h.server(
        "JOIN #lobby alice", "NAMES #lobby alice bob", "ENDNAMES #lobby",
        "GAP #lobby 9",
        "@id=10;time=0;history MSG bob #lobby " + payload_from("bob", "#lobby", "while you were away"),
        "@id=11;time=0;history MSG alice #lobby " + payload_from("alice", "#lobby", "my own"),
        "ENDHISTORY #lobby more",
    )
    sent = h.sent(raw=True)
    assert sent[0] == f"@cid={cid} MSG #lobby caesar:wkilo vycd"  # resent as it was
    assert re.match(r"@cid=\S+ MSG #lobby caesar:dizon yppvsxo$", sent[1])
    assert sent[2] == "HISTORY #lobby after 11"
    shown = h.display.take()
    assert "* some messages in #lobby were missed: the server no longer has them" in shown
    assert any(s.startswith("[#lobby] bob: while you were away (missed, ") for s in shown)
    assert not any("my own" in s for s in shown)


def test_works_with_a_server_without_ids_or_history():
    h = Harness().ready()
    h.server("ERROR unknown-command HISTORY is not a command")
    assert h.display.take() == []
    h.session.user_line("one")
    h.session.user_line("two")
    h.server("OK MSG #lobby", "OK MSG #lobby")  # no ids, no client ids
    assert h.session.unacked == {}
    h.session.user_eof()
    h.server("PONG eof-1")
    assert h.sent()[-1] == "QUIT"


def test_too_long_message_is_refused_locally():
    h = Harness().ready()
    h.session.user_line("x" * 70_000)
    assert h.sent() == []
    [shown] = h.display.take()
    assert shown.startswith("! message too long to send (")
    h.session.user_line("x" * 60_000)  # under the limit even encrypted with Caesar
    assert len(h.sent()) == 1


def test_no_greeting_means_a_clear_message_and_exit_1():
    # A plain client at a TLS port: the server waits for a handshake that
    # never comes, and says nothing.
    from twisted.internet.task import Clock

    from chatsvc.client import session as session_module

    clock = Clock()
    display = RecordingDisplay()
    session = ChatSession(display, CAESAR, "alice", "#lobby", "example:8443", clock=clock)
    results = []
    session.done.addCallback(results.append)
    protocol = ChatClientProtocol(session.events)
    transport = StringTransport()
    protocol.makeConnection(transport)
    clock.advance(session_module.HELLO_TIMEOUT - 1)
    assert not transport.disconnecting
    clock.advance(1)
    assert transport.disconnecting
    protocol.connectionLost(None)
    assert display.take() == [
        "! cannot talk to example:8443: no chatsvc greeting within 10 s — a TLS port? try --tls or --ca-file"
    ]
    assert results == [1]


def test_a_greeting_in_time_stops_the_timer():
    from twisted.internet.task import Clock

    clock = Clock()
    session = ChatSession(RecordingDisplay(), CAESAR, "alice", "#lobby", "example:8000", clock=clock)
    protocol = ChatClientProtocol(session.events)
    protocol.makeConnection(StringTransport())
    protocol.dataReceived(b"HELLO chatsvc 1 hi\n")
    assert not [c for c in clock.getDelayedCalls() if c.active() and c.func == session._greeting_missing]


def test_a_private_message_shows_as_sent_only_once_delivered():
    h = Harness().ready()
    h.session.user_line("/msg nosuchnick hi")
    assert h.sent() == ["MSG nosuchnick caesar:rs"]
    assert h.display.take() == []  # not yet: the server has not said
    h.server("ERROR no-such-nick nobody is called nosuchnick")
    assert h.display.take() == ["! nobody is called nosuchnick — not delivered: hi"]
    h.session.user_line("/msg bob psst")
    h.server("OK MSG bob")
    assert h.display.take() == ["[you → bob] psst"]


def back_as_variant() -> Harness:
    h = Harness()
    h.session.reconnect = True
    h.ready()
    h.close("gone")
    h.protocol = ChatClientProtocol(h.session.events)
    h.transport = StringTransport()
    h.protocol.makeConnection(h.transport)
    h.server("HELLO chatsvc 1 again", "ERROR nick-taken alice is already in use", "OK NICK alice_")
    h.server("JOIN #lobby alice_", "NAMES #lobby alice alice_", "ENDNAMES #lobby")
    h.sent(), h.display.take()
    return h


def test_the_nick_is_taken_back_as_soon_as_its_ghost_quits():
    # Issue #23, 11: back as alice_ while the old connection still held alice.
    h = back_as_variant()
    h.server("QUIT alice connection lost")
    assert h.sent() == ["NICK alice"]
    h.server("OK NICK alice", "NICK alice_ alice")
    assert h.session.nick == "alice"
    assert h.display.take()[-1] == "* you are now known as alice"
    h.session.clock.advance(120)
    assert h.sent() == []  # nothing more to take back


def test_the_nick_is_asked_for_again_quietly_until_it_is_free():
    h = back_as_variant()
    h.session.clock.advance(30)
    assert h.sent() == ["NICK alice"]
    h.server("ERROR nick-taken alice is already in use")
    assert h.display.take() == []  # a refusal while reclaiming shows nothing
    h.session.clock.advance(30)
    assert h.sent() == ["NICK alice"]
    h.server("OK NICK alice", "NICK alice_ alice")
    assert h.session.nick == "alice"


def test_a_nick_the_user_chose_is_not_taken_back():
    h = back_as_variant()
    h.session.user_line("/nick ali")
    h.server("OK NICK ali", "NICK alice_ ali")
    h.sent()
    h.server("QUIT alice connection lost")
    h.session.clock.advance(120)
    assert h.sent() == []
