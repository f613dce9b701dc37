"""
The connection core: protocol v1 for one client, whatever it came through.

A L{Connection} receives the lines a front door has framed (TCP and TLS in
``tcpdoor.py``; a WebSocket door frames them differently) and answers
through the door's small L{IDoor} interface: send a line, close, pause or
resume reading.  It knows nothing of sockets.  Here, once for every door:
the registration gate, command dispatch, client ids, the flood limit
(token bucket; over it, the door is asked to stop reading -- nothing is
dropped), timeouts, and closing with a reason.  Admission and the limits
shared by all connections are the L{Hub}'s (``hub.py``); rooms and nicks
are the relay's (``relay.py``).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from twisted.logger import Logger
from zope.interface import Attribute, Interface

import chatsvc
from chatsvc import grammar
from chatsvc.grammar import ProtocolError, error_line, format_line
from chatsvc.netinfo import origin_of
from chatsvc.ratelimit import TokenBucket
from chatsvc.relay import Member

if TYPE_CHECKING:
    from chatsvc.hub import Hub

# Commands a connection may use before it has a nick.
_UNREGISTERED_OK = frozenset({"NICK", "PING", "PONG", "QUIT", "CAPS", "STREAM"})

# A connection the server closed (a timeout, a broken rule) gets this long
# to go away politely; then it is aborted.  A peer that never reads (or a
# TLS peer that never finished its handshake) would otherwise hold its
# socket, and its place in the per-address count, forever.
CLOSE_GRACE = 10.0

# What a transport buffers before it pauses its producer (Twisted's
# FileDescriptor.bufferSize): counted as already queued once paused.
TRANSPORT_BUFFER = 64 * 1024
# The hub hears of a paused client's queue in steps this big, not on every
# line: the global budget is then exact to within this per client.
REPORT_STEP = 16 * 1024

# Commands whose output can be far larger than the line that asked for it
# are charged to the sender's flood budget: one line per this many lines
# they make the server send.
OUTPUT_LINES_PER_TOKEN = 10

HELLO = format_line(
    "HELLO",
    "chatsvc",
    str(grammar.PROTOCOL_VERSION),
    f"chatsvc/{chatsvc.__version__} relay; message bodies stay end-to-end encrypted",
)


class IDoor(Interface):
    """How a connection core reaches its client: what a front door offers."""

    peer = Attribute("'host:port' (or whatever names the peer), for logs")
    host = Attribute("the peer's IP address, or None (per-address limits)")
    closing = Attribute("True once the door is closing: nothing more goes out")
    stream_only = Attribute("True for a linked relay's link port: STREAM is the only line it takes")

    def send(data: bytes) -> None:
        """Queue one encoded line (ending in \\n); the door accounts for it."""

    def close(abort: bool) -> None:
        """Close politely (what is queued goes out first), or abort at once."""

    def pause_reading() -> None:
        """Stop delivering lines (the flood limit); TCP then slows the sender."""

    def resume_reading() -> None:
        """Deliver lines again."""


def queue_or_cut(door, size: int) -> bool:
    """
    A door must queue ``size`` bytes for a client whose socket buffer is
    full (``door._queued`` counts them since it filled): tell the hub in
    REPORT_STEP steps (the global output budget), and cut the client off
    past its own ``max_sendq``.  False when the client was cut off and
    nothing more should be written to it.  Shared by every door.
    """
    door._queued += size
    conn = door.conn
    if conn.admitted and door._queued - door._reported >= REPORT_STEP:
        door._reported = door._queued
        conn.hub.queued(conn, door._queued)
        if door.closing:
            return False  # cut off to keep all clients' output within budget
    limit = conn.limits.max_sendq
    if limit and TRANSPORT_BUFFER + door._queued > limit:
        door._paused = False  # only once
        conn.log.warn("{peer} is not reading; dropping it (send queue over {limit} bytes)", peer=door.peer, limit=limit)
        conn.close(
            "sendq-exceeded",
            f"you are not reading fast enough (over {limit} bytes queued); closing",
            "send queue exceeded",
            abort=True,
        )
        return False
    return True


class Connection:
    """One client connection speaking protocol v1, whatever its door."""

    log = Logger()

    # Real slots (no base class has a __dict__): a relay holds one of these
    # per connection.
    __slots__ = (
        "hub", "door", "member", "admitted", "quit_reason", "closed", "connected_at",
        "last_activity", "_pending", "_bucket", "_reading", "_resume_call", "_throttled",
        "_warned_flood", "_ping_sent_at", "_abort_call", "streaming", "stream_origin", "__weakref__",
        "number", "_inflight", "_held", "_in_log",
    )

    def __init__(self, hub: "Hub", door) -> None:
        self.hub = hub
        self.door = door
        self.member: Member | None = None
        self.admitted = False
        self.quit_reason = "connection lost"
        self.closed = None  # a Deferred made by Hub.close_all, fired on close
        self.connected_at = 0.0
        self.last_activity = 0.0
        self._pending: deque | None = None  # lines held back by the flood limit
        self._bucket: TokenBucket | None = None
        self._reading = True
        self._resume_call = None
        self._throttled = False
        self._warned_flood = False
        self._ping_sent_at: float | None = None
        self._abort_call = None
        self.streaming = False  # a bulk stream (streams.py), not a chat member
        self.stream_origin: str | None = None
        # Linked relays (cluster.py): this connection's number in the
        # cluster log, its entries appended but not yet applied, the lines
        # that wait for them, and whether the log knows of it at all.
        self.number = 0
        self._inflight = 0
        self._held: deque | None = None
        self._in_log = False

    @property
    def limits(self):
        return self.hub.limits

    @property
    def origin(self) -> str | None:
        return origin_of(self.door.host)

    # --- lifecycle -----------------------------------------------------------------

    def open(self) -> bool:
        """
        Admit the connection (or refuse it, saying why, and close) and greet
        it.  Returns whether it was admitted.
        """
        hub = self.hub
        refusal = hub.admit(self)
        if refusal is not None:
            code, text = refusal
            self.log.warn("refused {peer}: {code}", peer=self.door.peer, code=code)
            self.door.send(error_line(code, text))
            self.door.close(False)
            return False
        self.admitted = True
        # The relay writes to the door directly: on the fan-out hot path
        # every call per delivery counts (the door checks it is not closing).
        self.member = Member(self.door.send, self.door.peer, self.origin)
        now = hub.clock.seconds()
        limits = hub.limits
        if limits.flood_burst and limits.flood_rate:
            self._bucket = TokenBucket(limits.flood_burst, limits.flood_rate, now)
        self.connected_at = now
        self.last_activity = now
        # Not logged here: "<peer> registered as <nick>" says it, and three
        # log lines per connection were 40 % of the time 10,000 took to join.
        cluster = hub.cluster
        if cluster is None:
            self.door.send(HELLO)
        else:
            cluster.opened(self)
            self.door.send(cluster.hello())
        return True

    def lost(self) -> None:
        """The door is gone: leave the relay, free the place."""
        if self._abort_call is not None and self._abort_call.active():
            self._abort_call.cancel()
        if not self.admitted:
            return
        if self._resume_call is not None and self._resume_call.active():
            self._resume_call.cancel()
        self._pending = None
        if self.streaming:
            self.hub.streams.ended(self)
        self.hub.release(self)
        self._held = None
        cluster = self.hub.cluster
        if cluster is not None:
            cluster.closed(self, self.quit_reason)  # its QUIT goes through the log
            self.member = None
        member, self.member = self.member, None
        if member is not None:
            if member.nick is None and self.quit_reason != "quit":  # else logged as "<nick> quit"
                self.log.info("connection from {peer} closed", peer=member.peer)
            self.hub.relay.quit(member, self.quit_reason)
        if self.closed is not None:
            self.closed.callback(None)

    def close(self, code: str, text: str, quit_reason: str, abort: bool = False) -> None:
        """
        Tell the client why (best effort), then hang up -- by abort if the
        polite close has not finished within CLOSE_GRACE.
        """
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
        if self._abort_call is None:
            self._abort_call = self.hub.clock.callLater(CLOSE_GRACE, self.door.close, True)

    def send_line(self, data: bytes) -> None:
        """Every line to this client goes through here (and the door counts it)."""
        if not self.door.closing:
            self.door.send(data)

    # --- input and flood control ----------------------------------------------------

    def lines_received(self, lines: list[bytes | None]) -> None:
        """
        Lines the door framed, in order; None stands for a line over the
        limit (refused in order, after the lines before it).
        """
        if self.door.closing or not self.admitted:
            return
        self.last_activity = self.hub.clock.seconds()
        self._ping_sent_at = None
        if self._pending is None:
            self._handle_lines(lines)
        else:
            self._pending.extend(lines)
            self._drain()

    def _handle_lines(self, lines: list[bytes | None]) -> None:
        """Handle what the flood limit allows now; keep the rest for later."""
        granted = len(lines) if self._bucket is None else self._bucket.take(len(lines), self.hub.clock.seconds())
        for i in range(granted):
            if self.door.closing:
                return
            line = lines[i]
            if line is None:
                self.line_too_long()
                return
            self.line_received(line)
        if granted < len(lines) and not self.door.closing:
            self._pending = deque(lines[granted:])
            self._throttle()

    def _drain(self) -> None:
        pending = self._pending
        granted = self._bucket.take(len(pending), self.hub.clock.seconds())
        for _ in range(granted):
            if self.door.closing:
                return
            line = pending.popleft()
            if line is None:
                self.line_too_long()
                return
            self.line_received(line)
        if pending:
            if not self.door.closing:
                self._throttle()
            return
        self._pending = None
        if self._throttled:
            self._throttled = False
            self._update_reading()

    def _throttle(self) -> None:
        # Over the flood limit: stop reading, come back when the bucket has
        # a token again.  Nothing is dropped.
        if not self._warned_flood:
            self._warned_flood = True
            self.log.info(
                "{peer} sends faster than {rate:g} lines/s; slowing it down",
                peer=self.door.peer,
                rate=self.limits.flood_rate,
            )
        if not self._throttled:
            self._throttled = True
            self._update_reading()
        if self._resume_call is None or not self._resume_call.active():
            clock = self.hub.clock
            self._resume_call = clock.callLater(self._bucket.wait_time(clock.seconds()), self._unthrottle)

    def _unthrottle(self) -> None:
        self._resume_call = None
        if self._pending is not None:
            self._drain()

    def _update_reading(self) -> None:
        want = not self._throttled and self._held is None
        if want != self._reading and not self.door.closing:
            self._reading = want
            (self.door.resume_reading if want else self.door.pause_reading)()

    def charge(self, lines_sent: int) -> None:
        """A command made the server send many lines: it costs flood budget."""
        if self._bucket is not None and lines_sent > OUTPUT_LINES_PER_TOKEN:
            self._bucket.charge(lines_sent // OUTPUT_LINES_PER_TOKEN, self.hub.clock.seconds())

    def line_too_long(self) -> None:
        self.close("line-too-long", f"lines are limited to {self.limits.max_line} bytes; closing", "line too long")

    def line_received(self, raw: bytes) -> None:
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
        self._handle_text(text)

    def _handle_text(self, text: str) -> None:
        """One decoded line: answered, or refused with its error -- never raising."""
        try:
            self.handle(text)
        except ProtocolError as e:
            self.send_line(error_line(e.code, e.text))
        except Exception:
            # A bug must cost at most this one line, never the server or
            # other clients.
            self.log.failure("internal error handling a line from {peer}", peer=self.door.peer)
            self.send_line(error_line("server-error", "internal error; line dropped"))

    # --- timeouts ----------------------------------------------------------------------

    def check_timeouts(self, now: float) -> None:
        """
        Called about once a second by the hub's sweep (one timer for all
        connections is far cheaper than one per connection).
        """
        if self.door.closing or self.member is None or self.streaming:
            return  # a stream's wait for its partner has its own timer
        limits = self.limits
        if self.member.nick is None:
            if limits.register_timeout and now - self.connected_at >= limits.register_timeout:
                self.close(
                    "registration-timeout",
                    f"no NICK within {limits.register_timeout:g} seconds; closing",
                    "registration timeout",
                )
        elif not limits.idle_timeout:
            return
        elif self._ping_sent_at is not None:
            if now - self._ping_sent_at >= limits.ping_timeout:
                self.close(
                    "ping-timeout",
                    f"no reply to PING within {limits.ping_timeout:g} seconds; closing",
                    "ping timeout",
                )
        elif now - self.last_activity >= limits.idle_timeout:
            self._ping_sent_at = now
            self.send_line(format_line("PING", f"idle-{int(now)}"))

    # --- commands --------------------------------------------------------------------------

    def handle(self, text: str) -> None:
        line = grammar.parse_line(text)
        if line is None:
            return
        cluster = self.hub.cluster
        if cluster is not None and self._hold(text, line, cluster):
            return
        if self.door.stream_only and line.command != "STREAM":
            # a relay's link port (streamlink.py): stream ends only
            self.close("stream-invalid", "this port takes stream ends from other relays only; closing", "not a stream")
            return
        replicated = cluster is not None and cluster.replicates(line)
        if self.member.nick is None and line.command not in _UNREGISTERED_OK and not (replicated and self._inflight):
            # (with a NICK on its way through the cluster log, the log decides)
            raise ProtocolError("not-registered", f"{line.command} needs a nick first: send NICK <nick>")
        if replicated:
            if line.command == "MSG" and not grammar.is_valid_cid(line.tags.get("cid", "x")):
                raise ProtocolError("bad-syntax", "MSG cid tag: 1-64 characters of A-Z a-z 0-9 - _ .")
            if line.command == "QUIT" and not self._in_log:
                self._quit_in_log()  # the log never heard of it: nothing to tell the others
                return
            if cluster.submit(self, line.command, line.args, line.tags.get("cid")):
                self._inflight += 1
                self._in_log = True
            if line.command == "QUIT":
                self._quit_in_log()
            return
        if line.command == "MSG":
            cid = line.tags.get("cid")
            if cid is not None and not grammar.is_valid_cid(cid):
                raise ProtocolError("bad-syntax", "MSG cid tag: 1-64 characters of A-Z a-z 0-9 - _ .")
            try:
                self.hub.relay.message(self.member, *line.args, cid=cid)
            except ProtocolError as e:
                # Tagged, so a client can tell which of its messages failed.
                self.send_line(error_line(e.code, e.text, cid=cid))
            return
        getattr(self, "do_" + line.command)(*line.args)

    # --- linked relays (cluster.py) -----------------------------------------------------

    def _hold(self, text: str, line, cluster) -> bool:
        """
        Whether this line must wait: for the link to be ready, or for this
        connection's entries in the cluster log to take effect first (what it
        says next may depend on them, and answers keep their order).  Its
        further commands that go into the log need not wait: the log keeps
        their order, and applies them as one relay would have.
        """
        if self._held is not None:
            self._held.append(text)
            return True
        if cluster.ready and not (self._inflight and not cluster.replicates(line)):
            return False
        self._held = deque([text])
        self._update_reading()
        return True

    def entry_applied(self, op: str, cost: int) -> None:
        """One of this connection's log entries took effect (or was refused, and it was told)."""
        self._inflight -= 1
        member = self.member
        if member is not None and member.nick is not None:
            if op == "N":
                self.hub.registered(self)
            self.charge(cost)
        self.release_held()

    def release_held(self) -> None:
        """Handle the lines that waited, until one must wait again."""
        if self._held is None or self._inflight or self.door.closing or not self.hub.cluster.ready:
            return
        held, self._held = self._held, None
        while held:
            if self.door.closing:
                return
            self._handle_text(held.popleft())
            if self._held is not None:
                self._held.extend(held)
                return
        self._update_reading()

    def _quit_in_log(self) -> None:
        self.quit_reason = "quit"
        self._in_log = False  # the QUIT is there: nothing more to append on close
        self.door.close(False)
        self._abort_later()

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
        self.streaming = True
        self.hub.registered(self)  # out of the pool of connections that never register
        refusal = self.hub.streams.offer(self, token, role)
        if refusal is not None:
            code, _, text = refusal.partition(" ")
            self.close(code, text + "; closing", "stream refused")

    def do_CAPS(self) -> None:
        self.send_line(format_line("CAPS", *self.hub.capabilities()))

    def do_TOPIC(self, room: str, payload: str | None = None) -> None:
        # Setting one writes to every member: charged like other big replies.
        self.charge(self.hub.relay.topic(self.member, room, payload))

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
        self.quit_reason = "quit"
        member, self.member = self.member, None
        self.hub.relay.quit(member, reason or "")
        # Keep a placeholder so lines still in this read are not handled as
        # if from a fresh connection; the closing door stops them anyway.
        self.member = Member(lambda line: None, member.peer)
        self.door.close(False)
        self._abort_later()
