"""
The connection core: protocol v1 for one client, whatever it came through.

A L{Connection} receives the lines a front door has framed (TCP and TLS in
``tcpdoor.py``; a WebSocket door frames them differently) and answers
through the door's L{IDoor} (``doors.py``): send a line, close, pause or
resume reading.  It knows nothing of sockets.  Here, once for every door:
the registration gate, command dispatch, client ids, timeouts, and closing
with a reason; the flood limit is its ``FloodGate`` (``flood.py``), the
order lines take effect in its ordering (``ordering.py``: at once on a
relay of its own, after the shared log on linked relays).  Admission and
the limits shared by all connections are the L{Hub}'s (``hub.py``); rooms
and nicks are the relay's (``relay.py``).

A connection's life is an explicit L{Phase}: NEW (not admitted yet), OPEN
(a chat connection), STREAM (one end of a bulk stream), QUITTING (it said
QUIT; the rest of its input is ignored while it closes), CLOSED.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from twisted.logger import Logger

import chatsvc
from chatsvc import grammar
from chatsvc.doors import IDoor  # noqa: F401 -- the doors' contract, importable from here as before
from chatsvc.flood import FloodGate
from chatsvc.grammar import ProtocolError, error_line, format_line
from chatsvc.netinfo import origin_of
from chatsvc.ordering import LocalOrdering, LogOrdering
from chatsvc.relay import Member

if TYPE_CHECKING:
    from chatsvc.hub import Hub

# Commands a connection may use before it has a nick.
_UNREGISTERED_OK = frozenset({"NICK", "PING", "PONG", "QUIT", "CAPS", "STREAM"})

HELLO = format_line(
    "HELLO",
    "chatsvc",
    str(grammar.PROTOCOL_VERSION),
    f"chatsvc/{chatsvc.__version__} relay; message bodies stay end-to-end encrypted",
)


class Phase(enum.Enum):
    NEW = "new"
    OPEN = "open"
    STREAM = "stream"
    QUITTING = "quitting"
    CLOSED = "closed"


class Connection:
    """One client connection speaking protocol v1, whatever its door."""

    log = Logger()

    # Real slots: a relay holds one of these per connection.
    __slots__ = (
        "hub", "door", "member", "phase", "quit_reason", "closed", "connected_at", "last_activity", "flood",
        "order", "_reading", "_ping_sent_at", "_abort_call", "stream_origin", "number", "__weakref__",
    )

    def __init__(self, hub: "Hub", door) -> None:
        self.hub = hub
        self.door = door
        self.member: Member | None = None
        self.phase = Phase.NEW
        self.quit_reason = "connection lost"
        self.closed = None  # a Deferred made by Hub.close_all, fired on close
        self.connected_at = 0.0
        self.last_activity = 0.0
        self.flood: FloodGate | None = None
        self.order = LocalOrdering() if hub.cluster is None else LogOrdering(self, hub.cluster)
        self._reading = True
        self._ping_sent_at: float | None = None
        self._abort_call = None
        self.stream_origin: str | None = None  # a stream end's address, as its limit counted it (streams.py)
        self.number = 0  # on linked relays: its number in the cluster log (redislink.py)

    @property
    def limits(self):
        return self.hub.limits

    @property
    def origin(self) -> str | None:
        return origin_of(self.door.host)

    @property
    def admitted(self) -> bool:
        return self.phase is not Phase.NEW

    @property
    def streaming(self) -> bool:
        return self.phase is Phase.STREAM

    # --- lifecycle -----------------------------------------------------------------

    def open(self) -> bool:
        """Admit the connection (or refuse it, saying why, and close) and greet it; whether it was admitted."""
        hub = self.hub
        refusal = hub.admit(self)
        if refusal is not None:
            code, text = refusal
            self.log.warn("refused {peer}: {code}", peer=self.door.peer, code=code)
            self.door.send(error_line(code, text))
            self.door.close(False)
            return False
        self.phase = Phase.OPEN
        # The relay writes to the door directly: on the fan-out hot path
        # every call per delivery counts (the door checks it is not closing).
        self.member = Member(self.door.send, self.door.peer, self.origin)
        now = hub.clock.seconds()
        self.flood = FloodGate(self, hub.clock, self.limits.flood_burst, self.limits.flood_rate)
        self.connected_at = self.last_activity = now
        # Not logged here: "<peer> registered as <nick>" says it, and three
        # log lines per connection were 40 % of the time 10,000 took to join.
        if hub.cluster is None:
            self.door.send(HELLO)
        else:
            hub.cluster.opened(self)
            self.door.send(hub.cluster.hello())
        return True

    def lost(self) -> None:
        """The door is gone: leave the relay, free the place."""
        if self._abort_call is not None and self._abort_call.active():
            self._abort_call.cancel()
        phase, self.phase = self.phase, Phase.CLOSED
        if phase in (Phase.NEW, Phase.CLOSED):
            return
        self.flood.stop()
        if phase is Phase.STREAM:
            self.hub.streams.ended(self)
        self.hub.release(self)
        self.order.forget()
        member, self.member = self.member, None
        if self.hub.cluster is not None:
            self.hub.cluster.closed(self, self.quit_reason)  # its QUIT goes through the log
        elif member is not None:
            if member.nick is None and self.quit_reason != "quit":  # else logged as "<nick> quit"
                self.log.info("connection from {peer} closed", peer=member.peer)
            self.hub.relay.quit(member, self.quit_reason)
        if self.closed is not None:
            self.closed.callback(None)

    def close(self, code: str, text: str, quit_reason: str, abort: bool = False) -> None:
        """Tell the client why (best effort), then hang up -- by abort if the polite close takes too long."""
        door = self.door
        if door.closing and not abort:
            return
        self.quit_reason = quit_reason
        if not door.closing:
            door.send(error_line(code, text))
        if abort:
            door.close(True)
        else:
            door.close(False)
            self._abort_later()

    def _abort_later(self) -> None:
        # A peer that never reads (or a TLS peer that never finished its
        # handshake) would otherwise hold its socket, and its place, forever.
        if self._abort_call is None:
            self._abort_call = self.hub.clock.callLater(self.limits.close_grace, self.door.close, True)

    def quit_now(self) -> None:
        """It said QUIT: the rest of its input is ignored; closed politely."""
        self.quit_reason = "quit"
        self.phase = Phase.QUITTING
        self.door.close(False)
        self._abort_later()

    def send_line(self, data: bytes) -> None:
        """Every line to this client goes through here (and the door counts it)."""
        if not self.door.closing:
            self.door.send(data)

    # --- input ------------------------------------------------------------------------

    def lines_received(self, lines: list[bytes | None]) -> None:
        """Lines the door framed, in order; None stands for a line over the limit."""
        if self.door.closing or self.phase is not Phase.OPEN:
            return
        self.last_activity = self.hub.clock.seconds()
        self._ping_sent_at = None
        self.flood.lines(lines)

    def update_reading(self) -> None:
        """Read from the door unless the flood limit or the ordering holds it back."""
        want = not self.flood.throttled and not self.order.waiting
        if want != self._reading and not self.door.closing:
            self._reading = want
            (self.door.resume_reading if want else self.door.pause_reading)()

    def charge(self, lines_sent: int) -> None:
        self.flood.charge(lines_sent)

    def line_too_long(self) -> None:
        self.close("line-too-long", f"lines are limited to {self.limits.max_line} bytes; closing", "line too long")

    def line_received(self, raw: bytes) -> None:
        if self.phase is not Phase.OPEN:
            return  # (a QUIT earlier in this read: the rest is moot)
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if len(raw) > self.limits.max_line:
            self.line_too_long()
            return
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.send_line(error_line("bad-encoding", "lines must be UTF-8; line dropped"))
            return
        self.handle_text(text)

    def handle_text(self, text: str) -> None:
        """One decoded line: answered, or refused with its error -- never raising."""
        try:
            self.handle(text)
        except ProtocolError as e:
            self.send_line(error_line(e.code, e.text))
        except Exception:
            # A bug must cost at most this one line, never the server or other clients.
            self.log.failure("internal error handling a line from {peer}", peer=self.door.peer)
            self.send_line(error_line("server-error", "internal error; line dropped"))

    # --- timeouts ----------------------------------------------------------------------

    def check_timeouts(self, now: float) -> None:
        """About once a second, from the hub's sweep (one timer for all connections)."""
        if self.door.closing or self.phase is not Phase.OPEN:
            return  # a stream's wait for its partner has its own timer
        limits = self.limits
        if self.member.nick is None:
            if limits.register_timeout and now - self.connected_at >= limits.register_timeout:
                self.close("registration-timeout", f"no NICK within {limits.register_timeout:g} seconds; closing",
                           "registration timeout")
        elif not limits.idle_timeout:
            return
        elif self._ping_sent_at is not None:
            if now - self._ping_sent_at >= limits.ping_timeout:
                self.close("ping-timeout", f"no reply to PING within {limits.ping_timeout:g} seconds; closing",
                           "ping timeout")
        elif now - self.last_activity >= limits.idle_timeout:
            self._ping_sent_at = now
            self.send_line(format_line("PING", f"idle-{int(now)}"))

    # --- commands --------------------------------------------------------------------------

    def handle(self, text: str) -> None:
        line = grammar.parse_line(text)
        if line is None or self.order.hold(text, line):
            return
        if self.door.stream_only and line.command != "STREAM":
            # a relay's link port (streamlink.py): stream ends only
            self.close("stream-invalid", "this port takes stream ends from other relays only; closing", "not a stream")
            return
        replicated = self.order.replicated(line)
        if self.member.nick is None and line.command not in _UNREGISTERED_OK and not (replicated and self.order.in_flight()):
            # (with a NICK on its way through the cluster log, the log decides)
            raise ProtocolError("not-registered", f"{line.command} needs a nick first: send NICK <nick>")
        if line.command == "MSG" and not grammar.is_valid_cid(line.tags.get("cid", "x")):
            raise ProtocolError("bad-syntax", "MSG cid tag: 1-64 characters of A-Z a-z 0-9 - _ .")
        if replicated:
            self._to_log(line)
        elif line.command == "MSG":
            cid = line.tags.get("cid")
            try:
                self.hub.relay.message(self.member, *line.args, cid=cid)
            except ProtocolError as e:
                self.send_line(error_line(e.code, e.text, cid=cid))  # tagged: which of its messages failed
        else:
            getattr(self, "do_" + line.command)(*line.args)

    def _to_log(self, line) -> None:
        """Linked relays: a change to the chat goes into the shared log (cluster.py)."""
        if line.command == "QUIT" and not self.order.in_log:
            self.quit_now()  # the log never heard of it: nothing to tell the others
            return
        if self.hub.cluster.submit(self, line.command, line.args, line.tags.get("cid")):
            self.order.submitted()
        if line.command == "QUIT":
            self.quit_now()

    def entry_applied(self, op: str, cost: int) -> None:
        """One of this connection's log entries took effect (or was refused, and it was told)."""
        member = self.member
        if member is not None and member.nick is not None:
            if op == "N":
                self.hub.registered(self)
            self.charge(cost)
        self.order.applied()

    def release_held(self) -> None:
        """The link is ready again: the lines that waited go on."""
        self.order.release()

    def do_NICK(self, nick: str) -> None:
        registering = self.member.nick is None
        self.charge(self.hub.relay.set_nick(self.member, nick))
        if registering:
            self.hub.registered(self)

    def do_JOIN(self, room: str, proof: str | None = None) -> None:
        self.hub.relay.join(self.member, room, proof)

    def do_STREAM(self, token: str, role: str) -> None:
        """This connection becomes one end of a bulk stream (streams.py)."""
        if self.member.nick is not None:
            raise ProtocolError("stream-invalid", "STREAM is for a connection of its own, as its first line")
        self.phase = Phase.STREAM
        self.hub.registered(self)  # out of the pool of connections that never register
        refusal = self.hub.streams.offer(self, token, role)
        if refusal is not None:
            code, _, text = refusal.partition(" ")
            self.close(code, text + "; closing", "stream refused")

    def do_CAPS(self) -> None:
        self.send_line(format_line("CAPS", *self.hub.capabilities()))

    def do_TOPIC(self, room: str, payload: str | None = None) -> None:
        self.charge(self.hub.relay.topic(self.member, room, payload))  # setting one writes to every member

    def do_PART(self, room: str, reason: str | None = None) -> None:
        self.hub.relay.part(self.member, room, reason)

    def do_HISTORY(self, room: str, mode: str, value: str) -> None:
        self.hub.relay.send_history(self.member, room, mode, value)

    def do_NAMES(self, room: str) -> None:
        self.hub.relay.send_names(self.member, room)

    def do_ROOMS(self) -> None:
        self.charge(self.hub.relay.list_rooms(self.member))

    def do_PING(self, token: str | None = None) -> None:
        if token is not None and len(token) > grammar.MAX_TOKEN_CHARS:
            raise ProtocolError("bad-syntax", f"PING token: at most {grammar.MAX_TOKEN_CHARS} characters")
        self.send_line(format_line("PONG", token) if token else format_line("PONG"))

    def do_PONG(self, token: str | None = None) -> None:
        pass  # any line counts as activity; nothing else to do

    def do_QUIT(self, reason: str | None = None) -> None:
        member, self.member = self.member, None
        self.hub.relay.quit(member, reason or "")
        self.quit_now()
