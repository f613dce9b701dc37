"""
A chat session: what the user types becomes protocol commands, what the
server sends becomes lines for the user to read.

This is the client's logic, independent of how text reaches the screen:
front ends (``terminal.py``) feed it typed lines and give it a L{Display}.
Message texts are encrypted and decrypted here through the L{Cipher}
interface only.
"""

from __future__ import annotations

import base64
import itertools
import time
from collections import deque
from pathlib import Path
from typing import Callable, Protocol

from twisted.internet import defer, task, threads

from chatsvc import grammar
from chatsvc.client import files
from chatsvc.client.ciphers import Cipher, Context, DecryptError, Opened
from chatsvc.client.commands import Commands
from chatsvc.client.pins import CHANGED, NEW, KnownKeys
from chatsvc.client.delivery import Delivery
from chatsvc.client.lifecycle import Lifecycle, State
from chatsvc.client.text import clean
from chatsvc.client.transfers import Transfers
from chatsvc.client.protocol import ChatClientProtocol
from chatsvc.client.roster import Roster, mentions
from chatsvc.grammar import name_key



#: The replay state (what was seen from whom) is written this often, and at exit.
SAVE_INTERVAL = 2.0
#: How long a new connection may take to say HELLO.  A plain client at a
#: TLS port waits for ever otherwise (the server waits for a handshake).
HELLO_TIMEOUT = 10.0
#: A reason (PART, QUIT) is shown at most this long: it is anyone's text.
MAX_REASON_SHOWN = 80
#: Inside the encrypted text (docs/protocol.md, *Actions, away notes and topics*):
#: ``/me waves`` and an automatic private "I am away" answer.
ACTION_MARKER = "\x1fchatsvc-me:"
AWAY_MARKER = "\x1fchatsvc-away:"
#: A room topic's text: marked, so a relay cannot pass a message off as a
#: topic (or a topic as a message: unknown U+001F kinds are not shown).
TOPIC_MARKER = "\x1fchatsvc-topic:"
#: Per-user keys (aes3): "send me your keys" and the answer; both signed,
#: so the envelope carries the keys; nothing to show.
KEYREQ_MARKER = "\x1fchatsvc-keyreq:"
KEY_MARKER = "\x1fchatsvc-key:"
#: How long a private message waits for its recipient's keys before it goes
#: keyed by the passphrase alone (an older client never answers).
KEY_WAIT = 5.0
#: Messages kept from a nick whose key changed, shown if the user accepts it.
HELD_PER_NICK = 20


class Display(Protocol):
    """Where a session's output goes."""

    def show(self, text: str) -> None:
        """Show one line of output (no newline)."""

    def set_prompt(self, text: str) -> None:
        """The input prompt changed (interactive front ends show it)."""

    # Interactive front ends may also offer set_status(text | None): a line
    # kept above the input line, for progress.


def unverified(reason: str) -> str:
    """A PART/QUIT reason: anyone's text, so never shown as if authentic."""
    short = reason if len(reason) <= MAX_REASON_SHOWN else reason[:MAX_REASON_SHOWN] + "…"
    return f' (reason, not verified: "{clean(short)}")'




class ChatSession:
    """
    One user's conversation with one server.

    @param interactive: a person at a terminal (a refused nick can be fixed
        with /nick) rather than a script (a refused nick ends the session).
    @param reconnect: after an unexpected drop, wait for the connection to
        come back (someone else redials: see ``connection.py``) and pick up
        where it left off -- nick, rooms, current room, unsent input.
        Without it, a drop ends the session with status 1.
    @ivar done: fires with the exit status once the session is over.
    @ivar stop_connecting: called when the session ends, to stop redialling.
    """

    def __init__(
        self,
        display: Display,
        cipher: Cipher,
        nick: str,
        room: str,
        server: str,
        interactive: bool = False,
        reconnect: bool = False,
        downloads: Path | None = None,
        auto_accept_bytes: int = 10 * 1024 * 1024,
        clock=None,
        run_slow: Callable = threads.deferToThread,
        extra_rooms: list[str] | None = None,
        known_keys: KnownKeys | None = None,
    ) -> None:
        self.display = display
        self.cipher = cipher
        #: per-user keys (aes3): the pinned keys of others, trust on first use
        self.known = known_keys if known_keys is not None else KnownKeys()
        self.signing = getattr(cipher, "identity", None) is not None
        self._sessions: dict[str, bytes] = {}  # nick key -> their session's X25519 key, as announced
        self._reannounced: set[str] = set()
        if self.signing:
            cipher.peer_agree = self._peer_agree
            cipher.peer_session = lambda nick: self._sessions.get(name_key(nick))
        self._flagged: dict[str, object] = {}  # nick key -> the unaccepted keys we warned of
        self._held: dict[str, deque] = {}  # nick key -> (target, text) not shown as theirs
        self._waiting_key: dict[str, list[tuple[str, str, str | None]]] = {}  # DMs waiting for keys
        self._no_key: set[str] = set()  # nicks that did not answer a key request
        self._keys_answered: set[str] = set()
        self.wanted_nick = nick
        self.first_room = room
        self.extra_rooms = list(extra_rooms or [])  # joined too, at the start; the first stays current
        self.server = server
        self.interactive = interactive
        self.reconnect = reconnect
        self.done: defer.Deferred[int] = defer.Deferred()
        self.stop_connecting: Callable[[], object] = lambda: None

        self.protocol: ChatClientProtocol | None = None
        self.life = Lifecycle()
        self.greeted = False  # some server ever said HELLO
        self.nick: str | None = None  # as the server accepted it, this connection
        self.rooms: dict[str, str] = {}  # name_key -> room as the server writes it
        self.current: str | None = None
        self.pending: list[str] = []  # input typed before ready
        self._awaiting: set[str] = set()  # rooms to be in before ready
        self._switch_to: set[str] = set()  # joins that make the room current
        self._nick_tries = 0
        self._told_offline = False
        self._counts: dict[str, int] = {}  # large rooms' member counts
        self._joining_large: set[str] = set()
        self.exit_status = 0
        self.input_closed = False
        self._drain_token: str | None = None
        self._drained = False
        self._tokens = itertools.count(1)
        self.delivery = Delivery()  # ids, cids, resends, history catch-up
        # private messages sent and not yet answered, oldest first: the
        # server answers each with OK MSG <nick> or ERROR no-such-nick, in
        # order; a typed one is shown once it was delivered
        self._private_pending: list[tuple[str, str | None]] = []
        # history lines that could not be read, per (room key, sender):
        # told once per HISTORY reply, not once per line
        self._unreadable: dict[tuple[str, str], list] = {}
        self.commands = Commands(self)
        self.roster = Roster()  # members, ignored nicks, others' away texts, unread counts
        self.away_text: str | None = None  # ours, sent to who messages us privately
        self._topic_cap = False
        self._topic_asked: set[str] = set()  # rooms whose "no topic" answer we want to show
        self._away_told: set[str] = set()
        self._run_slow = run_slow
        self.clock = clock
        #: The relay's line limit: what CAPS says, else the protocol's default.
        self.max_line = grammar.DEFAULT_MAX_LINE
        self._hello_call = None
        self._no_greeting = False
        self._keys_ready: defer.Deferred | None = None  # aes2 key being derived
        self._told_no_caps = False
        self._streams_cap = False  # the relay splices bulk streams
        #: opens a new connection to the relay for a bulk stream (a protocol
        #: in, a Deferred out); None: files go in the chat connection only
        self.connect_stream: Callable | None = None
        self._saver: task.LoopingCall | None = None
        replay = getattr(cipher, "replay", None)
        if replay is not None and getattr(replay, "path", None) is not None and clock is not None:
            self._saver = task.LoopingCall(self.save_state)
            self._saver.clock = clock
            self._saver.start(SAVE_INTERVAL, now=False)
        self.transfers = Transfers(
            self, downloads or Path.home() / "Downloads" / "chatsvc", auto_accept_bytes, clock, run_slow
        )

    # --- state ---------------------------------------------------------------

    @property
    def online(self) -> bool:
        """A connection is up."""
        return self.life.online

    @property
    def ready(self) -> bool:
        """Registered and back in every room: typed lines go out."""
        return self.life.ready

    @property
    def quitting(self) -> bool:
        return self.life.quitting

    @property
    def unacked(self) -> dict[str, tuple[str, str]]:
        return self.delivery.unacked

    # --- output helpers ----------------------------------------------------

    def notice(self, text: str) -> None:
        self.display.show(f"* {text}")

    def problem(self, text: str) -> None:
        self.display.show(f"! {text}")

    def relay_notice(self, text: str) -> None:
        """A NOTICE: the relay telling everyone of its state (a link down, back)."""
        self.notice(f"relay: {clean(text)}")

    def set_current(self, room: str | None) -> None:
        """The room (or, after /query, the person) typed lines go to."""
        self.current = room
        if room is None:
            prompt = "[no room] "
        elif room.startswith("#"):
            prompt = f"[{room}] "
        else:
            prompt = f"[→ {room}] "
        self.display.set_prompt(prompt)
        self.roster.read(room)
        self._show_activity()

    def _show(self, line: str, alert: bool = False) -> None:
        """A line of conversation; ``alert``: it names you or is for you alone (bell, highlight)."""
        if alert and hasattr(self.display, "show_alert"):
            self.display.show_alert(line)
        else:
            self.display.show(line)

    def _show_activity(self) -> None:
        """Unread counts per room on the status line, where the front end has one."""
        setter = getattr(self.display, "set_activity", None)
        if setter is not None:
            rooms = {**{name_key(n): n for n in self.roster.unread}, **self.rooms}
            setter(self.roster.activity(rooms))

    def completions(self, before: str) -> tuple[str, list[str]]:
        """Tab: complete commands, rooms and the current room's nicks."""
        from chatsvc.client.completion import complete

        nicks = self.roster.nicks_in(self.current) if self.current and self.current.startswith("#") else []
        if self.current and not self.current.startswith("#"):
            nicks = [self.current]
        return complete(before, self.commands.names(), list(self.rooms.values()), nicks)

    def _finish(self, status: int) -> None:
        self.life.to(State.CLOSED)
        if self._saver is not None and self._saver.running:
            self._saver.stop()
        self.save_state()
        if not self.done.called:
            self.done.callback(status)

    def save_state(self) -> None:
        """Keep what was seen from whom, so a restart cannot be fooled."""
        replay = getattr(self.cipher, "replay", None)
        if replay is None:
            return
        try:
            replay.save()
        except OSError as e:
            self.problem(f"cannot save the replay state to {replay.path}: {e.strerror}")

    # --- typed input -------------------------------------------------------

    def user_line(self, text: str) -> None:
        text = text.rstrip("\r\n")
        if not text.strip():
            return
        if self.quitting:
            return
        if not self.ready and not self._allowed_early(text):
            self.pending.append(text)
            if self.greeted and not self.online:
                if not self._told_offline:
                    self._told_offline = True
                    self.notice("not connected: what you type is sent once the connection is back")
                if not text.startswith("/") or text.startswith("//"):
                    said = text[1:] if text.startswith("//") else text
                    self.display.show(f"[{self.current}] {self.wanted_nick}: {clean(said)} (pending)")
            return
        self._handle_input(text)

    def _allowed_early(self, text: str) -> bool:
        # A person whose nick was refused fixes it with /nick; quitting is
        # always possible.
        word = text.split(" ", 1)[0].lower()
        if text.strip().upper() == "FIN" or word == "/quit":
            return True
        return self.interactive and self.online and self.nick is None and word == "/nick"

    def user_eof(self) -> None:
        """Input ended: quit once everything typed so far has been handled."""
        self.input_closed = True
        if self.ready:
            self._drain_then_quit()
        elif self._nick_refused:
            self._quit(status=1)
        # otherwise: once ready (again), _become_ready drains and quits

    def _drain_then_quit(self) -> None:
        # The server answers lines in order, so its PONG to this PING means
        # every message sent before it has been handled (and any error for
        # it already shown).
        if self.quitting or self._drain_token is not None or not self.online:
            return
        self._drain_token = f"eof-{next(self._tokens)}"
        self.protocol.ping(self._drain_token)

    def _maybe_finish_drain(self) -> None:
        # Quit once the server has answered the PING and acknowledged every
        # room message (with a store, acknowledgements wait for the disk),
        # and no file is on its way in or out.
        if self._drained and not self.unacked and not self.transfers.busy():
            self._quit()

    def show_progress(self, text: str | None) -> bool:
        """A live line above the input, where the front end has one."""
        status = getattr(self.display, "set_status", None)
        if status is None:
            return False
        status(text)
        return True

    def stream_key(self, target: str, transfer_id: str, sender: str | None = None) -> bytes | None:
        file_key = getattr(self.cipher, "file_key", None)
        if not self._streams_cap or self.connect_stream is None or file_key is None:
            return None
        context = Context(target=target, sender=sender or self.nick or self.wanted_nick)
        if not self.signing:
            return file_key(context, transfer_id)
        # a private file: keyed to the two identities as well (aes3)
        return file_key(context, transfer_id, peer=sender or target)

    def open_stream(self, stream) -> None:
        from chatsvc.client.stream import CUT

        def failed(failure) -> None:
            # e.g. the relay restarting: the transfer resumes when it can
            stream._end(CUT)

        self.connect_stream(stream).addErrback(failed)

    def transfers_changed(self) -> None:
        self._maybe_finish_drain()

    def _handle_input(self, text: str) -> None:
        if text.strip().upper() == "FIN":
            self._quit()
            return
        if text.startswith("//"):
            self._say(text[1:])
            return
        if not text.startswith("/"):
            self._say(text)
            return
        self.commands.run(text)

    def _say(self, text: str, action: bool = False) -> None:
        if self.current is None:
            self.problem("you are not in a room; /join #room first")
            return
        # Control characters never start typed text: a leading one marks
        # file-transfer messages, actions and away notes.
        text = text.lstrip(files.MARKER[0]) or "?"
        said = f"* {self.nick} {clean(text)}" if action else f"{self.nick}: {clean(text)}"
        wire = ACTION_MARKER + text if action else text
        if not self.current.startswith("#"):
            # a /query: shown once the relay says it was delivered
            self.send_encrypted(self.current, wire, said if action else text)
            return
        if self.send_encrypted(self.current, wire):
            self.display.show(f"[{self.current}] {said}")

    def send_encrypted(self, target: str, text: str, shown: str | None = None) -> bool:
        """
        Encrypt and send; room messages get a client id and are tracked
        until acknowledged; a private message's ``shown`` text is shown once
        the relay delivered it.  False (with a notice) if it is too long for
        the relay, which would otherwise hang up on us.  A private message
        to someone whose keys we do not know yet waits for them (aes3).
        """
        if not target.startswith("#") and self.signing and name_key(target) in self.known.pending:
            # someone writes under this nick with keys that are not the pinned ones
            self.problem(f"not sent: {clean(target)}'s key changed; compare safety numbers with /verify "
                         f"{clean(target)} first")
            return False
        if not target.startswith("#") and self._wants_keys(target):
            self._await_keys(target, text, shown)
            return True
        payload = self.cipher.encrypt(text, Context(target=target, sender=self.nick))
        size = len(f"{self.delivery.longest_tag()}MSG {target} {payload}".encode())
        if size > self.max_line:
            self.problem(
                f"message too long to send ({size:,} bytes once encrypted; the limit is "
                f"{self.max_line:,}): split it, or /send it as a file"
            )
            return False
        if target.startswith("#"):
            cid = self.delivery.track(target, text)
            self.protocol.send_message(target, payload, cid)
        else:
            self._private_pending.append((target, shown))
            self.protocol.send_message(target, payload)
        return True

    def send_private(self, nick: str, text: str) -> None:
        """/msg: shown as sent once the server says it was delivered."""
        self.send_encrypted(nick, text, text)

    def send_control(self, target: str, text: str) -> None:
        """Send a file-transfer message (encrypted like chat, not shown)."""
        if self.online and self.nick is not None:
            self.send_encrypted(target, text)

    # --- per-user keys (aes3, identity.py) ------------------------------------------

    def _peer_agree(self, nick: str) -> bytes | None:
        """The X25519 key to key a private message to ``nick`` with: pinned, not in doubt."""
        key = name_key(nick)
        keys = self.known.keys_of(key)
        if keys is None or key in self.known.pending:
            return None
        return keys.agree

    def _wants_keys(self, nick: str) -> bool:
        return (
            self.signing and self.cipher.scheme == "aes3" and not self.cipher.private_to(nick)
            and name_key(nick) not in self._no_key
        )

    def _await_keys(self, nick: str, text: str, shown: str | None) -> None:
        """Ask ``nick`` for its keys (once) and hold the message until they come."""
        key = name_key(nick)
        waiting = self._waiting_key.get(key)
        if waiting is None:
            waiting = self._waiting_key[key] = []
            self._send_plain_control(nick, KEYREQ_MARKER)
            if self.clock is not None:
                self.clock.callLater(KEY_WAIT, self._keys_late, key)
        waiting.append((nick, text, shown))

    def _send_plain_control(self, nick: str, marker: str) -> None:
        # A control message that needs no keys of theirs: signed (so it
        # carries our identity's keys) and, inside, our session's key.
        text = marker + base64.urlsafe_b64encode(self.cipher.session_public).rstrip(b"=").decode()  # unpadded, as everywhere
        payload = self.cipher.encrypt(text, Context(target=nick, sender=self.nick), use_session=False)
        self._private_pending.append((nick, None))
        self.protocol.send_message(nick, payload)

    def _keys_known(self, key: str, late: bool = False) -> None:
        if not late and key not in self._sessions:
            return  # their session key comes with their answer
        for nick, text, shown in self._waiting_key.pop(key, []):
            if self.online:
                self.send_encrypted(nick, text, shown)

    def _keys_late(self, key: str) -> None:
        waiting = self._waiting_key.get(key)
        if not waiting:
            return
        nick = waiting[0][0]
        self._no_key.add(key)
        if self._peer_agree(nick) is not None:
            self.problem(f"{clean(nick)} did not send a session key: your private message goes keyed to your two "
                         "identities, without forward secrecy")
        else:
            self.problem(
                f"{clean(nick)} did not send their keys (an older client?): your private message goes keyed by the "
                "passphrase alone, which every member can read"
            )
        self._keys_known(key, late=True)

    def _trusted(self, sender: str, target: str, opened: Opened) -> str | None:
        """
        What per-user keys say of a decrypted message: None if it must not be
        shown as ``sender``'s (the user was told why), else a mark for the
        sender's name ('' or ' (unsigned)').
        """
        if not self.signing:
            return ""  # this client signs nothing, and checks nothing (Caesar)
        key = name_key(sender)
        signer = opened.signer
        if signer is None:
            if self.known.keys_of(key) is not None:
                self.problem(
                    f"a message under {clean(sender)}'s name without {clean(sender)}'s signature "
                    f"(they sign theirs) — not shown as {clean(sender)}"
                )
                return None
            return " (unsigned)"
        if self.nick is not None and key == name_key(self.nick):
            if signer == self.cipher.identity.public:
                return ""
        verdict = self.known.check(key, signer)
        if verdict == CHANGED:
            if self._flagged.get(key) != signer:
                self._flagged[key] = signer
                self.problem(f"{clean(sender)}'s key changed — not shown as {clean(sender)}; /verify {clean(sender)}")
            held = self._held.setdefault(key, deque(maxlen=HELD_PER_NICK))
            held.append((target, opened.text))
            return None
        if verdict == NEW:
            self.notice(
                f"{clean(sender)}'s key: {signer.fingerprint} (first seen, trusted from now on; "
                f"/verify {clean(sender)} to compare safety numbers)"
            )
        return ""

    def _session_announced(self, sender: str, encoded: str) -> None:
        try:
            session = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)) if encoded else b""
        except ValueError:
            session = b""
        key = name_key(sender)
        if len(session) == 32:
            self._sessions[key] = session
            self._reannounced.discard(key)
            self._keys_known(key)

    def verify(self, nick: str) -> None:
        """/verify: the safety number to compare, and the keys marked verified."""
        key = name_key(nick)
        keys = self.known.pending.get(key) or self.known.keys_of(key)
        if keys is None:
            self.problem(f"no keys seen from {clean(nick)} yet: they must write something first")
            return
        from chatsvc.client.identity import safety_number

        self.notice(
            f"safety number with {clean(nick)}: {safety_number(self.cipher.identity.public, keys)} — "
            f"compare it with {clean(nick)} in person or on a call: it is the same on both sides"
        )
        changed = key in self.known.pending
        self.known.accept(key, keys)
        self._flagged.pop(key, None)
        self.notice(f"{clean(nick)}'s key {keys.fingerprint} is now verified")
        for target, text in self._held.pop(key, []) if changed else []:
            where = clean(target) if target.startswith("#") else f"{clean(nick)} → you"
            self.display.show(f"[{where}] {clean(nick)}: {clean(text)} (held until /verify)")
        self._keys_known(key)

    def key_status(self, nick: str) -> str:
        """For /whois."""
        if not self.signing:
            return ""
        key = name_key(nick)
        keys = self.known.keys_of(key)
        if key in self.known.pending:
            return f"; key CHANGED to {self.known.pending[key].fingerprint}, not accepted (/verify {clean(nick)})"
        if keys is None:
            return "; no key seen (unsigned so far)"
        state = "verified" if self.known.is_verified(key) else f"not verified (/verify {clean(nick)})"
        return f"; key {keys.fingerprint}, {state}"

    def _join(self, room: str) -> None:
        """JOIN (with a proof, under aes2), and in the same breath ask for the room's history."""
        if self._keys_ready is not None and not self._keys_ready.called:
            self._keys_ready.addCallback(lambda _: self._join(room) if self.online else None)
            return
        proof = getattr(self.cipher, "join_proof", lambda room: None)(room)
        self.protocol.join(room, proof)
        self.protocol.request_history(room, *self.delivery.history_request(room))

    # --- what the slash commands (commands.py) call -------------------------

    def join_room(self, room: str) -> None:
        """/join: join and make it the current room once in."""
        self._switch_to.add(name_key(room))
        self._joining_large.add(name_key(room))
        self._join(room)

    def leave(self, reason: str | None = None) -> None:
        """/quit."""
        self._quit(reason)

    def _quit(self, reason: str | None = None, status: int = 0) -> None:
        if self.quitting:
            return
        self.exit_status = status
        self.life.to(State.CLOSING if self.online else State.CLOSED)
        self.stop_connecting()
        self.transfers.stop()
        if not self.online:
            self._finish(status)
            return
        self.protocol.quit(reason)
        self.protocol.transport.loseConnection()

    # --- server events (ClientEvents) --------------------------------------

    _nick_refused = False
    _warned = False

    def connected(self, protocol: ChatClientProtocol) -> None:
        self.protocol = protocol
        if self.quitting:  # a redial that raced with /quit
            protocol.transport.loseConnection()
            return
        self.life.to(State.REGISTERING)
        self.nick = None
        self._nick_tries = 0
        self._no_greeting = False
        if self.clock is not None:
            self._hello_call = self.clock.callLater(HELLO_TIMEOUT, self._greeting_missing)

    def _greeting_missing(self) -> None:
        self._hello_call = None
        self._no_greeting = True
        self.protocol.transport.abortConnection()

    def _cancel_hello_timer(self) -> None:
        if self._hello_call is not None and self._hello_call.active():
            self._hello_call.cancel()
        self._hello_call = None

    def retrying(self, delay: float) -> None:
        """The connection is being redialled in ``delay`` seconds."""
        if self.greeted and not self.quitting:
            self.notice(f"reconnecting to {self.server} in {delay:.0f} s")

    def hello(self, version: str, text: str) -> None:
        self._cancel_hello_timer()
        again = self.greeted
        self.greeted = True
        self.notice(f"{'reconnected' if again else 'connected'} to {self.server} ({clean(text)})")
        made = getattr(self.cipher, "identity_made", None)
        if made and not again:
            self.notice(f"made your identity keys in {made}; your fingerprint: {self.cipher.identity.public.fingerprint}")
        if not self.cipher.secure and not self._warned:
            self._warned = True
            self.problem(
                f"warning: the {self.cipher.scheme} cipher is not secure -- anyone who sees "
                "the traffic can read it; the default cipher, aes, is secure"
            )
        if version != str(grammar.PROTOCOL_VERSION):
            self.problem(f"server speaks protocol {clean(version)}; this client knows {grammar.PROTOCOL_VERSION}")
        if hasattr(self.cipher, "use_v2"):
            # Answered before OK NICK (the server replies in order), so the
            # key for join proofs is on its way before the first JOIN.
            self.protocol.request_caps()
        self.protocol.register(self.wanted_nick)

    def caps(self, tokens: list[str] | None) -> None:
        """The relay's capabilities (None: an older relay without CAPS)."""
        values = dict(t.partition("=")[::2] for t in tokens or [])
        if grammar.is_decimal(values.get("max-line", ""), 9):
            self.max_line = int(values["max-line"])
        self._streams_cap = grammar.CAP_STREAMS in values
        self._topic_cap = grammar.CAP_TOPIC in values
        salt = values.get("salt", "")
        if not salt or not grammar.is_valid_proof(salt) or grammar.CAP_JOIN_PROOF not in values:
            if not self._told_no_caps:
                self._told_no_caps = True
                self.problem(
                    "this server is older: messages use scheme aes1 (no per-server salt, and "
                    "anyone who reaches the server can fetch room history to guess the passphrase)"
                )
            return
        if getattr(self.cipher, "salt", None) == salt:
            return  # same server, key already derived
        derived = self._run_slow(self.cipher.derive_v2, salt)

        def ready(master: bytes) -> None:
            self.cipher.use_v2(master, salt)

        def failed(failure) -> None:
            self.problem(f"cannot derive the key for this server: {failure.getErrorMessage()}")

        self._keys_ready = derived.addCallbacks(ready, failed)

    def nick_accepted(self, nick: str) -> None:
        # Later changes are applied from the NICK line that follows.
        if self.nick is not None or self.quitting:
            return
        self.nick = nick
        self._nick_refused = False
        self.life.to(State.JOINING)
        if self.wanted_nick != nick and self.rooms:
            self.notice(f"you are {clean(nick)} ({clean(self.wanted_nick)} was taken meanwhile)")
        else:
            self.notice(f"you are {clean(nick)}")
        if self.rooms:
            # Back after a drop: rejoin where we were, keep the current room.
            rejoin = list(self.rooms.values())
            self._awaiting = set(self.rooms)
            self.rooms = {}
            for room in rejoin:
                self._join(room)
        else:
            rooms = [self.first_room, *self.extra_rooms]
            self._awaiting = {name_key(room) for room in rooms}
            self._switch_to.add(name_key(self.first_room))
            for room in rooms:
                self._join(room)

    def message_accepted(self, target: str, msg_id: int | None = None, cid: str | None = None) -> None:
        if not target.startswith("#"):
            if self._private_pending:
                nick, text = self._private_pending.pop(0)
                if text is not None:
                    self.display.show(f"[you → {clean(target)}] {clean(text)}")
            return
        # Shown when sent; here it only stops being "unacknowledged".
        self.delivery.acknowledged(target, msg_id, cid)
        self._maybe_finish_drain()

    def error(self, code: str, text: str, cid: str | None = None) -> None:
        if code == "unknown-command" and text.startswith("HISTORY"):
            return  # an older server without history: nothing to show
        if code == "unknown-command" and text.startswith("CAPS"):
            self.caps(None)  # an older server: aes1 without join proofs
            return
        if code == "no-such-nick" and cid is None and self._private_pending:
            nick, said = self._private_pending.pop(0)
            if said is None:
                return  # a file message to someone who left: the transfer notices
            self.problem(f"{clean(text or code)} — not delivered: {clean(said)}")
            return
        room = self.delivery.refused(cid)
        if room is not None:
            self.problem(f"a message to {clean(room)} was not delivered: {clean(text or code)}")
            self._maybe_finish_drain()
            return
        if code == "nick-taken" and self.nick is None and self.greeted and self.rooms and self._nick_tries < 9:
            # Reconnecting: our old connection may still hold the nick until
            # the server notices it is gone.  Take a variant meanwhile.
            self._nick_tries += 1
            base = self.wanted_nick
            candidate = (base[: 32 - 2] + "_" + (str(self._nick_tries) if self._nick_tries > 1 else ""))[:32]
            self.protocol.register(candidate)
            return
        self.problem(clean(text) if text else clean(code))
        if code in ("nick-taken", "nick-invalid") and self.nick is None:
            self._nick_refused = True
            if self.interactive:
                self.problem("choose another nick with /nick NAME")
            else:
                self._quit(status=1)

    def joined(self, room: str, nick: str) -> None:
        self.roster.joined(room, nick)
        if self.nick is not None and name_key(nick) == name_key(self.nick):
            key = name_key(room)
            self.rooms[key] = room
            if key in self._switch_to or self.current is None:
                self._switch_to.discard(key)
                self.set_current(room)
            self.notice(f"you joined {clean(room)}")
        else:
            self.notice(f"{clean(nick)} joined {clean(room)}")

    def parted(self, room: str, nick: str, reason: str | None) -> None:
        why = unverified(reason) if reason else ""
        me = self.nick is not None and name_key(nick) == name_key(self.nick)
        self.roster.parted(room, nick, me)
        if me:
            self.rooms.pop(name_key(room), None)
            self._show_activity()
            self.notice(f"you left {clean(room)}{why}")
            if self.current and name_key(self.current) == name_key(room):
                self.set_current(next(iter(self.rooms.values()), None))
        else:
            self.notice(f"{clean(nick)} left {clean(room)}{why}")

    def quit(self, nick: str, reason: str | None) -> None:
        why = unverified(reason) if reason else ""
        self.roster.quit(nick)
        self.notice(f"{clean(nick)} quit{why}")

    def nick_changed(self, old: str, new: str) -> None:
        self.roster.renamed(old, new)
        if self.current and name_key(self.current) == name_key(old):
            self.set_current(new)  # a /query follows the person
        if self.nick is not None and name_key(old) == name_key(self.nick):
            self.nick = new
            self.notice(f"you are now known as {clean(new)}")
        else:
            self.notice(f"{clean(old)} is now known as {clean(new)}")

    def message(self, sender: str, target: str, payload: str, tags: dict[str, str] | None = None) -> None:
        tags = tags or {}
        me = name_key(self.nick or "")
        suffix = ""
        from_history = False
        if not target.startswith("#"):
            # A private message must be addressed to us, and is never
            # history (the relay keeps none): either is a relay's trick.
            if name_key(target) != me:
                self.problem(f"ignored a private message from {clean(sender)} addressed to {clean(target)}, not you")
                return
            if "history" in tags:
                self.problem(f"ignored a private message from {clean(sender)} marked as history (replayed?)")
                return
        else:
            key = name_key(target)
            if key not in self.rooms:
                self.problem(f"ignored a message from {clean(sender)} for {clean(target)}: you are not in it")
                return
            # History only inside a reply we asked for; the tag alone is
            # the relay's say-so and would skip the freshness check.
            from_history = "history" in tags and self.delivery.in_history_reply(target)
            if "history" in tags and not from_history:
                self.problem(f"ignored a message from {clean(sender)} in {clean(target)} marked as history, unasked")
                return
            if not from_history and sender and name_key(sender) == me:
                return  # our own message sent back: we showed it when we sent it
            if not self.delivery.first_time(target, tags.get("id", "")):
                return  # already shown (history overlapping what came live)
            if from_history and self.delivery.history_mode(target) == "missed" and name_key(sender) in (
                me,
                name_key(self.wanted_nick),
            ):
                return  # our own, already shown when we sent it
        context = Context(target=target, sender=sender, history=from_history)
        try:
            opened = self._open(payload, context)
        except DecryptError as e:
            if from_history:
                entry = self._unreadable.setdefault((name_key(target), sender), [0, str(e)])
                entry[0] += 1
                return
            where = f"in {clean(target)}" if target.startswith("#") else "(private)"
            self.problem(f"cannot read a message from {clean(sender)} {where}: {clean(str(e))}")
            if "session" in str(e) and self.signing and name_key(sender) not in self._reannounced:
                # keyed to a session we had before a restart, or to theirs we
                # have not seen: exchange session keys again, so the next reads
                self._reannounced.add(name_key(sender))
                self._send_plain_control(sender, KEYREQ_MARKER)
            return
        mark = self._trusted(sender, target, opened) if name_key(sender) != me or opened.signer else ""
        if mark is None:
            return
        text = opened.text
        if text.startswith(KEYREQ_MARKER) or text.startswith(KEY_MARKER):
            # keys asked for, or given: the envelope carried their identity's,
            # the text their session's; answer a request once per person
            if not target.startswith("#") and not from_history and opened.signer is not None and self.signing:
                encoded = text.split(":", 1)[1]
                self._session_announced(sender, encoded)
                # answered once per session of theirs (a restarted one asks again)
                if text.startswith(KEYREQ_MARKER) and (name_key(sender), encoded) not in self._keys_answered:
                    self._keys_answered.add((name_key(sender), encoded))
                    self._send_plain_control(sender, KEY_MARKER)
            return
        if from_history:
            # The sender's own timestamp, authenticated with the message;
            # the relay's time tag is not trusted.
            if opened.sent_ms is not None:
                when = time.strftime("%H:%M", time.localtime(opened.sent_ms / 1000))
            else:
                when = "time unknown"
            suffix = f" ({self.delivery.history_mode(target)}, {when})"
        try:
            transfer = files.decode(text)
        except files.TransferError as e:
            self.problem(f"bad file message from {clean(sender)}: {e}")
            return
        if self.roster.is_ignored(sender) and name_key(sender) != me:
            return  # /ignore: nothing of theirs, files included
        if transfer is not None:
            if not from_history and name_key(sender) != me:
                self.transfers.handle(sender, target, transfer)
            return
        if text.startswith(AWAY_MARKER):
            if not target.startswith("#") and not from_history:
                away = text[len(AWAY_MARKER):].strip()[:MAX_REASON_SHOWN]
                self.roster.away[name_key(sender)] = away
                self.notice(f"{clean(sender)} is away: {clean(away)}" if away else f"{clean(sender)} is back")
            return
        action = text.startswith(ACTION_MARKER)
        if action:
            text = text[len(ACTION_MARKER):]
        elif text.startswith(files.MARKER[0]):
            return  # a kind a newer client knows (docs/protocol.md): nothing to show
        said = f"* {clean(sender)}{mark} {clean(text)}" if action else f"{clean(sender)}{mark}: {clean(text)}"
        named = not from_history and name_key(sender) != me and mentions(text, self.nick)
        if target.startswith("#"):
            line = f"[{clean(target)}] {said}{suffix}"
            if not from_history and (not self.current or name_key(target) != name_key(self.current)):
                self.roster.message_in(target, named)
                self._show_activity()
        else:
            line = f"[{clean(sender)}{mark} → you] {said if action else clean(text)}"
            if self.signing and opened.signer is not None and not opened.private:
                line += " (not private: keyed by the passphrase alone)"
            if not self.current or name_key(sender) != name_key(self.current):
                self.roster.message_in(sender, True)  # a private message always wants you
                self._show_activity()
            if self.away_text is not None and name_key(sender) not in self._away_told:
                self._away_told.add(name_key(sender))
                self.send_control(sender, AWAY_MARKER + self.away_text)
        self._show(line, alert=named or not target.startswith("#"))

    def _open(self, payload: str, context: Context) -> Opened:
        opener = getattr(self.cipher, "open", None)
        if opener is not None:
            return opener(payload, context)
        return Opened(self.cipher.decrypt(payload, context), None)

    def history_gap(self, room: str, oldest: int) -> None:
        self.notice(f"some messages in {clean(room)} were missed: the server no longer has them")

    def history_end(self, room: str, more: bool) -> None:
        self.delivery.history_ended(room)
        mode = self.delivery.history_mode(room)
        for (key, sender), (count, reason) in list(self._unreadable.items()):
            if key != name_key(room):
                continue
            del self._unreadable[(key, sender)]
            if count == 1:
                self.problem(f"cannot read a message from {clean(sender)} in {clean(room)} ({mode}): {clean(reason)}")
            else:
                guess = " — a different passphrase?" if "does not authenticate" in reason else f": {clean(reason)}"
                self.problem(f"{count} {mode} messages from {clean(sender)} in {clean(room)} could not be read{guess}")
        if more and name_key(room) in self.rooms:
            self.protocol.request_history(room, *self.delivery.more_history(room))

    def member_count(self, room: str, count: int) -> None:
        # Large rooms send counts instead of join notices; show the one that
        # answers our own join, not the periodic updates.
        if name_key(room) in self._awaiting or name_key(room) in self._joining_large:
            self._joining_large.discard(name_key(room))
            self.notice(f"{clean(room)} is a large room: {count} members (/names lists them)")
        self._counts[name_key(room)] = count

    def name_list(self, room: str, nicks: list[str]) -> None:
        self.roster.names(room, nicks, first=True)
        if nicks or name_key(room) not in self._counts:
            self.notice(f"in {clean(room)}: {', '.join(clean(n) for n in nicks)}")
        self._joining_large.discard(name_key(room))
        self._awaiting.discard(name_key(room))
        if not self.ready and self.nick is not None and not self._awaiting:
            self._become_ready()

    def room_list(self, rooms: list[tuple[str, int]]) -> None:
        if not rooms:
            self.notice("no rooms")
            return
        self.notice("rooms: " + ", ".join(f"{clean(r)} ({n})" for r, n in rooms))

    def topic(self, room: str, setter: str | None, when_ms: int | None, payload: str | None) -> None:
        """A room's topic: on joining, when someone sets it, or asked with /topic."""
        key = name_key(room)
        if key not in self.rooms:
            return
        asked = key in self._topic_asked
        self._topic_asked.discard(key)
        if setter is None:
            if asked:
                self.notice(f"{clean(room)} has no topic; /topic text sets one")
            return
        try:
            # Old by nature (kept by the relay): no freshness check, as for history.
            opened = self._open(payload, Context(target=room, sender=setter, history=True))
        except DecryptError as e:
            self.problem(f"cannot read the topic of {clean(room)} set by {clean(setter)}: {clean(str(e))}")
            return
        if not opened.text.startswith(TOPIC_MARKER):
            self.problem(f"the topic of {clean(room)} is not a topic (a message passed off as one?); ignored")
            return
        mark = self._trusted(setter, room, opened) if self.nick is None or name_key(setter) != name_key(self.nick) else ""
        if mark is None:
            return  # not shown as the setter's (told why)
        text = opened.text[len(TOPIC_MARKER):]
        stamp = opened.sent_ms if opened.sent_ms is not None else when_ms
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp / 1000)) if stamp else "at an unknown time"
        self.notice(f"topic of {clean(room)}: {clean(text)} (set by {clean(setter)}{mark}, {when})")

    def set_topic(self, room: str, text: str) -> None:
        """/topic text: encrypted for the room like a message; the relay keeps the ciphertext."""
        if not self._topic_cap:
            self.problem("this relay keeps no topics (it is older than this client)")
            return
        payload = self.cipher.encrypt(TOPIC_MARKER + text, Context(target=room, sender=self.nick))
        if len(payload) > grammar.MAX_TOPIC_CHARS:
            self.problem(f"topic too long ({len(payload)} characters once encrypted; at most {grammar.MAX_TOPIC_CHARS})")
            return
        self.protocol.set_topic(room, payload)

    def ask_topic(self, room: str) -> None:
        if not self._topic_cap:
            self.problem("this relay keeps no topics (it is older than this client)")
            return
        self._topic_asked.add(name_key(room))
        self.protocol.request_topic(room)

    def pong(self, token: str | None) -> None:
        if token is not None and token == self._drain_token:
            self._drained = True
            self._maybe_finish_drain()

    def unexpected(self, line: str, reason: str) -> None:
        self.problem(f"ignored a malformed line from the server: {clean(reason)}")

    def disconnected(self, reason: str) -> None:
        self.delivery.connection_lost()
        for nick, text in self._private_pending:
            if text is not None:
                self.problem(f"a private message to {clean(nick)} may not have been delivered: {clean(text)}")
        self._private_pending.clear()
        self._cancel_hello_timer()
        if self._no_greeting:
            reason = f"no chatsvc greeting within {HELLO_TIMEOUT:g} s — a TLS port? try --tls or --ca-file"
        self._drain_token = None
        self._drained = False
        self.transfers.disconnected()
        if self.quitting:
            self._finish(self.exit_status)
            return
        if not self.greeted or not self.reconnect:
            self.life.to(State.CLOSED)
        else:
            self.life.to(State.OFFLINE)
        if not self.greeted:
            # Never got as far as HELLO: TLS refused, or not a chatsvc server.
            self.problem(f"cannot talk to {self.server}: {clean(reason)}")
            self._finish(1)
            self.stop_connecting()
            return
        self.problem(f"connection to {self.server} lost: {clean(reason)}")
        if not self.reconnect:
            self._finish(1)
            self.stop_connecting()
            return
        self.wanted_nick = self.nick or self.wanted_nick
        self.nick = None
        self._told_offline = False

    def _become_ready(self) -> None:
        if self.quitting:
            return
        self.life.to(State.READY)
        self._told_offline = False
        # First what was sent but never acknowledged (same client ids: the
        # server drops any it already has), then what was typed meanwhile.
        self.transfers.reconnected()
        for cid, room, text in self.delivery.to_resend(self.rooms):
            # Encrypted afresh: the envelope binds the sender's nick, which
            # may have changed (back as alice_, not alice).
            payload = self.cipher.encrypt(text, Context(target=room, sender=self.nick))
            self.protocol.send_message(room, payload, cid)
        queued, self.pending = self.pending, []
        for text in queued:
            if self.quitting:
                return
            self._handle_input(text)
        if self.input_closed:
            self._drain_then_quit()
