"""
A chat session: what the user types becomes protocol commands, what the
server sends becomes lines for the user to read.

The session only wires parts together (docs/trust.md, *The parts*):
``inbound`` and ``trust`` decide what to believe, ``keyexchange`` and
``sending`` what may go out, ``receiving`` carries out decisions on what
came in, ``presence`` and ``roster`` follow who is where, ``delivery``
keeps nothing lost and nothing twice, ``transfers`` moves files.  This
module holds the connection's life: greeting, capabilities, registration,
joining, reconnecting, quitting.  Front ends (``terminal.py``) feed it
typed lines and give it a L{Display}.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol

from twisted.internet import defer, task, threads

from chatsvc import grammar
from chatsvc.client import inbound
from chatsvc.client.ciphers import Cipher, Context, Opened
from chatsvc.client.commands import Commands
from chatsvc.client.conversations import Conversations
from chatsvc.client.delivery import Delivery
from chatsvc.client.events import SessionEvents
from chatsvc.client.inbound import ACTION_MARKER, AWAY_MARKER, KEY_MARKER, KEYREQ_MARKER, TOPIC_MARKER  # noqa: F401
from chatsvc.client.input import Typing
from chatsvc.client.lifecycle import Lifecycle, State
from chatsvc.client.pins import KnownKeys
from chatsvc.client.presence import MAX_REASON_SHOWN, Presence, unverified  # noqa: F401
from chatsvc.client.reclaim import Reclaim
from chatsvc.client.receiving import Receiver
from chatsvc.client.registration import Registration
from chatsvc.client.roster import Roster
from chatsvc.client.sealing import Sealing
from chatsvc.client.keyring import Keyring
from chatsvc.client.sending import Sender
from chatsvc.client.text import clean
from chatsvc.client.transfers import Transfers
from chatsvc.client.trust import Trust

#: The replay state (what was seen from whom) is written this often, and at exit.
SAVE_INTERVAL = 2.0
#: How long a new connection may take to say HELLO (a plain client at a TLS port waits for ever otherwise).
HELLO_TIMEOUT = 10.0


class Display(Protocol):
    """Where a session's output goes."""

    def show(self, text: str) -> None:
        """Show one line of output (no newline)."""

    def set_prompt(self, text: str) -> None:
        """The input prompt changed (interactive front ends show it)."""

    # Interactive front ends may also offer set_status(text | None): a line
    # kept above the input line, for progress; show_alert(line); set_activity(text).


class ChatSession:
    """
    One user's conversation with one server.

    @param interactive: a person at a terminal (a refused nick can be fixed
        with /nick) rather than a script (a refused nick ends the session).
    @param reconnect: after an unexpected drop, wait for the connection to
        come back (someone else redials: see ``connection.py``) and pick up
        where it left off -- nick, rooms, current room, unsent input.
    @param clock: the reactor's clock (IReactorTime): key exchange retries,
        the greeting timeout and saving the replay state run on it.
    @ivar done: fires with the exit status once the session is over.
    @ivar stop_connecting: called when the session ends, to stop redialling.
    """

    def __init__(self, display: Display, cipher: Cipher, nick: str, room: str, server: str,
                 interactive: bool = False, reconnect: bool = False, downloads: Path | None = None,
                 auto_accept_bytes: int = 10 * 1024 * 1024, *, clock, run_slow: Callable = threads.deferToThread,
                 extra_rooms: list[str] | None = None, known_keys: KnownKeys | None = None,
                 keyring: Keyring | None = None) -> None:
        self.display = display
        self.cipher = cipher
        self.clock = clock
        self.server = server
        self.interactive = interactive
        self.reconnect = reconnect
        self.wanted_nick = nick
        self.first_room = room
        self.extra_rooms = list(extra_rooms or [])  # joined too, at the start; the first stays current
        self.done: defer.Deferred[int] = defer.Deferred()
        self.stop_connecting: Callable[[], object] = lambda: None
        self.protocol = None
        self.life = Lifecycle()
        self.nick: str | None = None  # as the server accepted it, this connection
        self.exit_status = 0
        self.away_text: str | None = None  # ours, sent once to who messages us privately
        #: The relay's line limit: what CAPS says, else the protocol's default.
        self.max_line = grammar.DEFAULT_MAX_LINE
        #: sees every decision of the inbound policy (stage, Decision): tests and debugging
        self.on_decision: Callable | None = None
        #: opens a new connection to the relay for a bulk stream (None: files go in the chat connection)
        self.connect_stream: Callable | None = None
        identity = getattr(cipher, "identity", None)
        self.trust = Trust(identity.public if identity is not None else None,
                           known_keys if known_keys is not None else KnownKeys(), self.notice, self.problem)
        self.delivery = Delivery()  # ids, cids, resends, history catch-up
        self.roster = Roster()  # members, ignored nicks, others' away texts, unread counts
        self.conversations = Conversations(display, self.roster, self.trust.verified)  # rooms we are in, the current one
        self.presence = Presence(self)
        self.reclaim = Reclaim(self)  # our nick back, once a ghost lets go of it
        self.sender = Sender(self)
        self.receiver = Receiver(self)
        self.registration = Registration(self, run_slow)
        self.typing = Typing(self)
        self.commands = Commands(self)
        self.events = SessionEvents(self)
        self.sealing = Sealing(self, keyring)  # sealed rooms: their keys, statements, epochs; rejoined
        if self.trust.signing:
            cipher.peer_agree = self.trust.peer_agree
            cipher.peer_session = self.sender.session_of
        self._saver: task.LoopingCall | None = None
        replay = getattr(cipher, "replay", None)
        if replay is not None and getattr(replay, "path", None) is not None:
            self._saver = task.LoopingCall(self.save_state)
            self._saver.clock = clock
            self._saver.start(SAVE_INTERVAL, now=False)
        self.transfers = Transfers(
            self, downloads or Path.home() / "Downloads" / "chatsvc", auto_accept_bytes, clock, run_slow
        )

    # --- state ---------------------------------------------------------------------------

    @property
    def online(self) -> bool:
        return self.life.online

    @property
    def ready(self) -> bool:
        """Registered and back in every room: typed lines go out."""
        return self.life.ready

    @property
    def quitting(self) -> bool:
        return self.life.quitting

    @property
    def rooms(self) -> dict[str, str]:
        """The rooms we are in: name_key -> room as the relay writes it."""
        return self.conversations.rooms

    @property
    def current(self) -> str | None:
        return self.conversations.current

    @property
    def greeted(self) -> bool:
        return self.registration.greeted

    @property
    def signing(self) -> bool:
        return self.trust.signing

    @property
    def unacked(self) -> dict[str, tuple[str, str]]:
        return self.delivery.unacked

    @property
    def input_closed(self) -> bool:
        return self.typing.closed

    def selves(self) -> tuple:
        """Our nicks: the one accepted and the one wanted (whose key is our identity)."""
        return (self.nick, self.wanted_nick)

    def placement_view(self) -> inbound.View:
        return inbound.View(
            me=self.nick, wanted=self.wanted_nick, rooms=frozenset(self.rooms),
            history_open=self.delivery.open_replies(), history_mode=self.delivery.modes(),
            last_id=dict(self.delivery.last_id),
        )

    def decided(self, stage: str, decision: inbound.Decision) -> inbound.Decision:
        if self.on_decision is not None:
            self.on_decision(stage, decision)
        return decision

    def open(self, payload: str, context: Context) -> Opened:
        opener = getattr(self.cipher, "open", None)
        if opener is not None:
            return opener(payload, context)
        return Opened(self.cipher.decrypt(payload, context), None)

    # --- output ------------------------------------------------------------------------------

    def notice(self, text: str, where: str | None = None) -> None:
        """A notice; ``where``: the room or person it is about (its window), None: the window in view."""
        self.output(f"* {text}", where)

    def problem(self, text: str, where: str | None = None) -> None:
        self.output(f"! {text}", where)

    def output(self, line: str, where: str | None, alert: bool = False) -> None:
        """One line to the front end, for ``where``'s window where it has windows."""
        show_in = getattr(self.display, "show_in", None)  # a front end with windows
        if show_in is not None:
            show_in(where, line, alert)
        elif alert and hasattr(self.display, "show_alert"):
            self.display.show_alert(line)
        else:
            self.display.show(line)

    def relay_notice(self, text: str) -> None:
        """A NOTICE: the relay telling everyone of its state (a link down, back)."""
        self.notice(f"relay: {clean(text)}")

    def show(self, line: str, alert: bool = False, where: str | None = None) -> None:
        """A line of conversation in ``where``'s window; ``alert``: it names you or is for you alone."""
        self.output(line, where, alert)

    def set_current(self, room: str | None) -> None:
        self.conversations.set_current(room)

    def attention(self, where: str, mention: bool) -> None:
        self.conversations.attention(where, mention)

    def show_activity(self) -> None:
        self.conversations.show_activity()

    def show_progress(self, text: str | None) -> bool:
        """A live line above the input, where the front end has one."""
        status = getattr(self.display, "set_status", None)
        if status is None:
            return False
        status(text)
        return True

    # --- typed input (input.py) ---------------------------------------------------------------

    def user_line(self, text: str) -> None:
        self.typing.line(text)

    def user_eof(self) -> None:
        self.typing.eof()

    def say(self, text: str, action: bool = False) -> None:
        """Typed text (or /me) for the current room or person."""
        if self.current is None:
            self.problem("you are not in a room; /join #room first")
            return
        # Control characters never start typed text: a leading one marks files, actions, away notes.
        text = text.lstrip("\x1f") or "?"
        said = f"* {self.nick} {clean(text)}" if action else f"{self.nick}: {clean(text)}"
        wire = ACTION_MARKER + text if action else text
        if not self.current.startswith("#"):
            self.sender.send(self.current, wire, said if action else text)  # shown once delivered
        elif self.sender.send(self.current, wire):
            self.output(f"[{self.current}] {said}", self.current)

    # --- what commands.py and transfers.py call ---------------------------------------------------

    def send_private(self, nick: str, text: str) -> None:
        """/msg: shown as sent once the server says it was delivered."""
        if not self.sealing.refuses("private"):
            self.sender.send(nick, text, text)

    def send_control(self, target: str, text: str) -> None:
        """Send a file-transfer message or an automatic note (encrypted like chat, not shown)."""
        if self.online and self.nick is not None:
            self.sender.send(target, text)

    def set_away(self, text: str | None) -> None:
        self.away_text = text
        self.receiver.away_changed()

    def verify(self, nick: str, answer: str = "") -> None:
        """/verify: the safety number to compare; with an answer, the keys marked verified."""
        for target, who, text in self.trust.verify(nick, answer):
            where = clean(target) if target.startswith("#") else f"{clean(who)} → you"
            self.output(f"[{where}] {clean(who)}: {clean(text)} (held until /verify)", target if target.startswith("#") else who)
        self.conversations.show_prompt()  # a query's prompt shows the verified mark

    def key_status(self, nick: str) -> str:
        return self.trust.key_status(nick)

    def stream_key(self, target: str, transfer_id: str, sender: str | None = None) -> bytes | None:
        file_key = getattr(self.cipher, "file_key", None)
        if not self.registration.streams or self.connect_stream is None or file_key is None:
            return None
        context = Context(target=target, sender=sender or self.nick or self.wanted_nick)
        if not self.signing:
            return file_key(context, transfer_id)
        return file_key(context, transfer_id, peer=sender or target)  # private: keyed to the two identities too

    def open_stream(self, stream) -> None:
        from chatsvc.client.stream import CUT

        def failed(failure) -> None:
            stream._end(CUT)  # e.g. the relay restarting: the transfer resumes when it can

        self.connect_stream(stream).addErrback(failed)

    def transfers_changed(self) -> None:
        self.typing.maybe_finish_drain()

    def join_room(self, room: str) -> None:
        """/join: join and make it the current room once in."""
        if self.sealing.refuses(room):
            return
        self.presence.joining(room, switch=True)
        self.registration.join(room)

    def leave(self, reason: str | None = None) -> None:
        """/quit."""
        self.quit_session(reason)

    def quit_session(self, reason: str | None = None, status: int = 0) -> None:
        if self.quitting:
            return
        self.exit_status = status
        self.life.to(State.CLOSING if self.online else State.CLOSED)
        self.stop_connecting()
        self.transfers.stop()
        if not self.online:
            self.finish(status)
            return
        self.protocol.quit(reason)
        self.protocol.transport.loseConnection()

    def finish(self, status: int) -> None:
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

    def become_ready(self) -> None:
        if self.quitting:
            return
        self.life.to(State.READY)
        self.reclaim.consider()
        # First what was sent but never acknowledged (same client ids: the
        # server drops any it already has), then what was typed meanwhile.
        self.transfers.reconnected()
        for cid, room, text in self.delivery.to_resend(self.rooms):
            # Encrypted afresh: the envelope binds the sender's nick, which may have changed.
            payload = self.cipher.encrypt(text, Context(target=room, sender=self.nick))
            self.protocol.send_message(room, payload, cid)
        self.typing.flush()
