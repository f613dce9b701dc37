"""
The Twisted side of the relay: one L{ChatProtocol} per connection, and the
L{ChatFactory} that carries the shared L{Relay} state and the limits.

The protocol turns bytes into lines, lines into commands, and commands into
calls on the relay; it never looks inside message payloads.  It also
enforces every per-connection limit, and cuts off only the offender:

- output: it registers itself as a streaming producer on its transport;
  while the transport says its buffer is full, what is written to the
  connection is counted, and past ``max_sendq`` the connection is dropped;
- input: a token bucket per connection; over the limit, reading from that
  connection pauses (TCP pushes back on the sender) -- no line is dropped;
- time: unregistered connections must register, idle ones answer a PING.
"""

from __future__ import annotations

import ipaddress
from collections import Counter, deque
from dataclasses import dataclass

from twisted.internet import defer, interfaces, protocol, task
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver
from zope.interface import implementer

import chatsvc
from chatsvc import grammar
from chatsvc.grammar import ProtocolError, error_line, format_line
from chatsvc.ratelimit import TokenBucket
from chatsvc.relay import Member, Relay, RelayError

# Commands a connection may use before it has a nick.
_UNREGISTERED_OK = frozenset({"NICK", "PING", "PONG", "QUIT", "CAPS"})

# What a TCP transport buffers before it pauses its producer (Twisted's
# FileDescriptor.bufferSize); counted as already queued when paused.
TRANSPORT_BUFFER = 64 * 1024

# Timeouts are checked this often (seconds), for all connections at once.
SWEEP_INTERVAL = 1.0

# A connection the server closed (a timeout, a broken rule) gets this long
# to go away politely; then it is aborted.  A peer that never reads (or a
# TLS peer that never finished its handshake) would otherwise hold its
# socket, and its place in the per-address count, forever.
CLOSE_GRACE = 10.0

# When the server is full, a connection that has not registered after this
# long makes room for a newcomer (a real client registers in milliseconds).
UNREGISTERED_GRACE = 5.0

# Commands whose output can be far larger than the line that asked for it
# are charged to the sender's flood budget: one line per this many lines
# they make the server send.
OUTPUT_LINES_PER_TOKEN = 10


def origin_of(host: str | None) -> str | None:
    """
    The unit per-address limits count: an IPv4 address, or an IPv6 /64 (one
    customer's network: anyone with one has 2**64 addresses to spread over).
    An IPv4 address mapped into IPv6 counts as the IPv4 address.
    """
    if not host or ":" not in host:
        return host
    try:
        address = ipaddress.IPv6Address(host.split("%", 1)[0])
    except ValueError:
        return host
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Network((address, 64), strict=False))

_HELLO = format_line(
    "HELLO",
    "chatsvc",
    str(grammar.PROTOCOL_VERSION),
    f"chatsvc/{chatsvc.__version__} relay; message bodies stay end-to-end encrypted",
)


@dataclass(frozen=True)
class Limits:
    """Per-connection and per-server limits; 0 turns a limit off."""

    max_line: int = grammar.DEFAULT_MAX_LINE
    max_sendq: int = 1024 * 1024
    flood_burst: int = 50
    flood_rate: float = 20.0
    max_clients: int = 10_000
    max_per_ip: int = 100
    #: All clients' queued output together (bytes); past it, the client with
    #: the most queued is cut off.  Without it, max_clients x max_sendq
    #: (10 GiB by default) would be the only bound.
    max_total_sendq: int = 256 * 1024 * 1024
    register_timeout: float = 30.0
    idle_timeout: float = 120.0
    ping_timeout: float = 60.0
    shutdown_grace: float = 3.0


@implementer(interfaces.IPushProducer)
class ChatProtocol(LineOnlyReceiver):
    """One client connection speaking protocol v1."""

    log = Logger()
    delimiter = b"\n"

    # Slots, not an instance __dict__: a relay holds one of these per
    # connection, and the dict alone would cost more than everything else.
    __slots__ = (
        "factory", "transport", "connected", "limits", "clock", "host", "origin", "member",
        "admitted", "quit_reason", "closed", "_buffer", "_pending", "_bucket",
        "_output_paused", "_queued_while_paused", "_reading", "_resume_call",
        "_throttled", "_warned_flood", "_connected_at", "_last_activity", "_ping_sent_at",
        "_abort_call",
    )

    def __init__(self) -> None:
        self.factory: ChatFactory | None = None
        self.transport = None
        self.connected = 0
        self.limits: Limits | None = None
        self.clock = None
        self.host: str | None = None
        self.origin: str | None = None
        self.member: Member | None = None
        self.admitted = False
        self.quit_reason = "connection lost"
        self.closed: defer.Deferred | None = None  # made by close_all, fired on close
        self._buffer = b""
        self._pending: deque | None = None  # lines held back by the flood limit
        self._bucket: TokenBucket | None = None
        self._output_paused = False
        self._queued_while_paused = 0
        self._reading = True
        self._resume_call = None
        self._throttled = False
        self._warned_flood = False
        self._connected_at = 0.0
        self._last_activity = 0.0
        self._ping_sent_at: float | None = None
        self._abort_call = None

    # --- connection lifecycle ---------------------------------------------

    def connectionMade(self) -> None:
        factory = self.factory
        self.limits = factory.limits
        self.clock = factory.clock
        peer = self.transport.getPeer()
        self.host = getattr(peer, "host", None)
        self.origin = origin_of(self.host)
        peer_text = f"{self.host}:{getattr(peer, 'port', '')}" if self.host else str(peer)
        refusal = factory.admit(self)
        if refusal is not None:
            code, text = refusal
            self.log.warn("refused {peer}: {code}", peer=peer_text, code=code)
            self.transport.write(error_line(code, text))
            self.transport.loseConnection()
            return
        self.admitted = True
        # Chat lines are small and latency matters; Twisted already batches
        # writes per reactor turn, so Nagle's algorithm only adds delay.
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            try:
                set_no_delay(True)
            except OSError:
                pass
        self.member = Member(self.send_line, peer_text, self.origin)
        now = self.clock.seconds()
        if self.limits.flood_burst and self.limits.flood_rate:
            self._bucket = TokenBucket(self.limits.flood_burst, self.limits.flood_rate, now)
        self._connected_at = now
        self._last_activity = now
        self.transport.registerProducer(self, True)
        self.log.info("connection from {peer}", peer=peer_text)
        self.transport.write(_HELLO)

    def connectionLost(self, reason: object = None) -> None:
        if self._abort_call is not None and self._abort_call.active():
            self._abort_call.cancel()
        if not self.admitted:
            return
        if self._resume_call is not None and self._resume_call.active():
            self._resume_call.cancel()
        self._pending = None
        self.factory.release(self)
        member, self.member = self.member, None
        if member is not None:
            self.factory.relay.quit(member, self.quit_reason)
            self.log.info("connection from {peer} closed", peer=member.peer)
        if self.closed is not None:
            self.closed.callback(None)

    def close(self, code: str, text: str, quit_reason: str, abort: bool = False) -> None:
        """
        Tell the client why (best effort), then hang up -- by abort if the
        polite close has not finished within CLOSE_GRACE.
        """
        if self.transport.disconnecting and not abort:
            return
        self.quit_reason = quit_reason
        if not self.transport.disconnecting:
            self.transport.write(error_line(code, text))
        if abort:
            self.transport.abortConnection()
        else:
            self.transport.loseConnection()
            self._abort_later()

    def _abort_later(self) -> None:
        if self._abort_call is None and self.clock is not None:
            self._abort_call = self.clock.callLater(CLOSE_GRACE, self.transport.abortConnection)

    # --- output and backpressure (IPushProducer) ---------------------------

    def send_line(self, data: bytes) -> None:
        """Every line to this client goes through here, and is counted."""
        if self.transport.disconnecting:
            return  # closing: what it has not read by now is moot
        if self._output_paused:
            self._queued_while_paused += len(data)
            self.factory.queued(self, len(data))
            limit = self.limits.max_sendq
            if limit and TRANSPORT_BUFFER + self._queued_while_paused > limit:
                self._output_paused = False  # only once
                self.log.warn(
                    "{peer} is not reading; dropping it (send queue over {limit} bytes)",
                    peer=self.member.peer if self.member else "?",
                    limit=limit,
                )
                self.close(
                    "sendq-exceeded",
                    f"you are not reading fast enough (over {limit} bytes queued); closing",
                    "send queue exceeded",
                    abort=True,
                )
                return
        self.transport.write(data)

    def pauseProducing(self) -> None:
        # The transport's buffer is full: this client is not keeping up.
        # (Transports call this again on every write while full.)
        # Reading from the client goes on: a TLS transport also pauses us
        # until its handshake is done, which needs reading to get anywhere.
        if not self._output_paused:
            self._output_paused = True
            self._queued_while_paused = 0

    def resumeProducing(self) -> None:
        self._output_paused = False
        self._forget_queued()

    def _forget_queued(self) -> None:
        queued, self._queued_while_paused = self._queued_while_paused, 0
        if queued and self.factory is not None:
            self.factory.queued(self, -queued)

    def cut_off(self, reason: str) -> None:
        """Dropped to keep the server's total output within its budget."""
        self._output_paused = False
        self._forget_queued()
        self.close("sendq-exceeded", reason, "send queue exceeded", abort=True)

    def stopProducing(self) -> None:
        pass

    def _update_reading(self) -> None:
        # Don't read more from a client over its flood limit; its own TCP
        # window then slows it down.
        want = not self._throttled
        if want != self._reading and not self.transport.disconnecting:
            self._reading = want
            (self.transport.resumeProducing if want else self.transport.pauseProducing)()

    # --- framing and flood control ------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        # One split per chunk (not per line, as LineReceiver does), so a big
        # read costs linear time.  A trailing "\r" is allowed in lines, so the
        # buffer may hold max_line + 1 bytes before it must end.
        if self.transport.disconnecting or not self.admitted:
            return
        self._last_activity = self.clock.seconds()
        self._ping_sent_at = None
        lines: list[bytes | None] = (self._buffer + data).split(self.delimiter)
        self._buffer = lines.pop()
        if len(self._buffer) > self.limits.max_line + 1:
            # Refused in order, after the complete lines before it.
            self._buffer = b""
            lines.append(None)
        if self._pending is None:
            self._handle_lines(lines)
        else:
            self._pending.extend(lines)
            self._drain()

    def charge(self, lines_sent: int) -> None:
        """A command made the server send many lines: it costs flood budget."""
        if self._bucket is not None and lines_sent > OUTPUT_LINES_PER_TOKEN:
            self._bucket.charge(lines_sent // OUTPUT_LINES_PER_TOKEN, self.clock.seconds())

    def _handle_lines(self, lines: list[bytes | None]) -> None:
        """Handle what the flood limit allows now; keep the rest for later."""
        granted = len(lines) if self._bucket is None else self._bucket.take(len(lines), self.clock.seconds())
        for i in range(granted):
            if self.transport.disconnecting:
                return
            line = lines[i]
            if line is None:
                self.lineLengthExceeded(b"")
                return
            self.lineReceived(line)
        if granted < len(lines) and not self.transport.disconnecting:
            self._pending = deque(lines[granted:])
            self._throttle()

    def _drain(self) -> None:
        pending = self._pending
        granted = self._bucket.take(len(pending), self.clock.seconds())
        for _ in range(granted):
            if self.transport.disconnecting:
                return
            line = pending.popleft()
            if line is None:
                self.lineLengthExceeded(b"")
                return
            self.lineReceived(line)
        if pending:
            if not self.transport.disconnecting:
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
                peer=self.member.peer,
                rate=self.limits.flood_rate,
            )
        if not self._throttled:
            self._throttled = True
            self._update_reading()
        if self._resume_call is None or not self._resume_call.active():
            delay = self._bucket.wait_time(self.clock.seconds())
            self._resume_call = self.clock.callLater(delay, self._unthrottle)

    def _unthrottle(self) -> None:
        self._resume_call = None
        if self._pending is not None:
            self._drain()

    def lineLengthExceeded(self, line: bytes) -> None:
        self.close(
            "line-too-long", f"lines are limited to {self.limits.max_line} bytes; closing", "line too long"
        )

    def lineReceived(self, raw: bytes) -> None:
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if len(raw) > self.limits.max_line:
            self.lineLengthExceeded(raw)
            return
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.send_line(error_line("bad-encoding", "lines must be UTF-8; line dropped"))
            return
        try:
            self.handle(text)
        except (ProtocolError, RelayError) as e:
            self.send_line(error_line(e.code, e.text))
        except Exception:
            # A bug must cost at most this one line, never the server or
            # other clients.
            self.log.failure("internal error handling a line from {peer}", peer=self.member.peer)
            self.send_line(error_line("server-error", "internal error; line dropped"))

    # --- timeouts ------------------------------------------------------------

    def check_timeouts(self, now: float) -> None:
        """
        Called about once a second by the factory's sweep (one timer for all
        connections is far cheaper than one per connection).
        """
        if self.transport.disconnecting or self.member is None:
            return
        limits = self.limits
        if self.member.nick is None:
            if limits.register_timeout and now - self._connected_at >= limits.register_timeout:
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
        elif now - self._last_activity >= limits.idle_timeout:
            self._ping_sent_at = now
            self.send_line(format_line("PING", f"idle-{int(now)}"))

    # --- commands ----------------------------------------------------------

    def handle(self, text: str) -> None:
        line = grammar.parse_line(text)
        if line is None:
            return
        if self.member.nick is None and line.command not in _UNREGISTERED_OK:
            raise ProtocolError("not-registered", f"{line.command} needs a nick first: send NICK <nick>")
        if line.command == "MSG":
            cid = line.tags.get("cid")
            if cid is not None and not grammar.is_valid_cid(cid):
                raise ProtocolError("bad-syntax", "MSG cid tag: 1-64 characters of A-Z a-z 0-9 - _ .")
            try:
                self.factory.relay.message(self.member, *line.args, cid=cid)
            except RelayError as e:
                # Tagged, so a client can tell which of its messages failed.
                self.send_line(error_line(e.code, e.text, cid=cid))
            return
        getattr(self, "do_" + line.command)(*line.args)

    def do_NICK(self, nick: str) -> None:
        registering = self.member.nick is None
        self.charge(self.factory.relay.set_nick(self.member, nick))
        if registering:
            self.factory.registered(self)

    def do_JOIN(self, room: str, proof: str | None = None) -> None:
        self.factory.relay.join(self.member, room, proof)

    def do_CAPS(self) -> None:
        self.send_line(format_line("CAPS", *self.factory.capabilities()))

    def do_PART(self, room: str, reason: str | None = None) -> None:
        self.factory.relay.part(self.member, room, reason)

    def do_HISTORY(self, room: str, mode: str, value: str) -> None:
        self.factory.relay.send_history(self.member, room, mode, value)

    def do_NAMES(self, room: str) -> None:
        self.factory.relay.send_names(self.member, room)

    def do_ROOMS(self) -> None:
        self.charge(self.factory.relay.list_rooms(self.member))

    def do_PING(self, token: str | None = None) -> None:
        if token is not None and len(token) > grammar.MAX_TOKEN_CHARS:
            raise ProtocolError("bad-syntax", f"PING token: at most {grammar.MAX_TOKEN_CHARS} characters")
        self.send_line(format_line("PONG", token) if token else format_line("PONG"))

    def do_PONG(self, token: str | None = None) -> None:
        pass  # any line counts as activity; nothing else to do

    def do_QUIT(self, reason: str | None = None) -> None:
        member, self.member = self.member, None
        self.factory.relay.quit(member, reason or "")
        # Keep a placeholder so lines still in this read are not handled as
        # if from a fresh connection; disconnecting stops them anyway.
        self.member = Member(lambda line: None, member.peer)
        self.transport.loseConnection()
        self._abort_later()


class ChatFactory(protocol.ServerFactory):
    """Shared state of one listening relay: the relay, limits, connections."""

    protocol = ChatProtocol
    noisy = False  # ListeningService already logs where we listen
    log = Logger()

    def __init__(self, relay: Relay, limits: Limits | None = None, clock=None) -> None:
        if clock is None:
            from twisted.internet import reactor as clock
        self.relay = relay
        self.limits = limits or Limits(max_line=relay.max_line)
        self.clock = clock
        self.connections: set[ChatProtocol] = set()
        self.per_host: Counter[str] = Counter()  # by origin (address or /64)
        self.unregistered: dict[ChatProtocol, None] = {}  # oldest first
        self.total_queued = 0  # output queued behind full transports, all clients
        self._queuing: dict[ChatProtocol, None] = {}  # clients with output queued
        self._announcer: task.LoopingCall | None = None
        self._sweeper: task.LoopingCall | None = None

    def startFactory(self) -> None:
        if self.relay.large_room:
            self._announcer = task.LoopingCall(self.relay.announce_counts)
            self._announcer.clock = self.clock
            self._announcer.start(grammar.MEMBERS_INTERVAL, now=False)

    def stopFactory(self) -> None:
        if self._announcer is not None and self._announcer.running:
            self._announcer.stop()
        self._announcer = None

    def capabilities(self) -> list[str]:
        """What CAPS announces (docs/protocol.md, *Capabilities*)."""
        caps = [grammar.CAP_JOIN_PROOF, f"max-line={self.limits.max_line}"]
        if self.relay.salt:
            caps.append(f"salt={self.relay.salt}")
        return caps

    def admit(self, proto: ChatProtocol) -> tuple[str, str] | None:
        """Count a new connection in, or say why it is refused."""
        limits = self.limits
        if limits.max_clients and len(self.connections) >= limits.max_clients and not self._make_room():
            return "server-full", f"the server is full ({limits.max_clients} connections); try later"
        origin = proto.origin
        if origin and limits.max_per_ip and self.per_host[origin] >= limits.max_per_ip:
            return "too-many-connections", f"at most {limits.max_per_ip} connections per address"
        self.connections.add(proto)
        self.unregistered[proto] = None
        if origin:
            self.per_host[origin] += 1
        if self._sweeper is None and (limits.register_timeout or limits.idle_timeout):
            self._sweeper = task.LoopingCall(self._sweep)
            self._sweeper.clock = self.clock
            self._sweeper.start(SWEEP_INTERVAL, now=False)
        return None

    def _make_room(self) -> bool:
        """
        Full: drop the oldest connection that has sat without a nick past
        UNREGISTERED_GRACE, if there is one.  Silent sockets then cannot
        lock people out; a flood of them only churns.
        """
        oldest = next(iter(self.unregistered), None)
        if oldest is None or self.clock.seconds() - oldest._connected_at < UNREGISTERED_GRACE:
            return False
        self.log.info("server full: dropping {peer}, which never registered", peer=oldest.member.peer)
        oldest.close("registration-timeout", "the server is full and you have not sent NICK; closing",
                     "registration timeout", abort=True)
        self.release(oldest)  # now, not when the abort completes
        return True

    def registered(self, proto: ChatProtocol) -> None:
        self.unregistered.pop(proto, None)

    def queued(self, proto: ChatProtocol, change: int) -> None:
        """
        Output queued behind a full transport grew (or was sent); past the
        global budget, the client with the most queued is cut off -- the one
        costing the most, whoever made the server write to it.
        """
        self.total_queued += change
        if proto._queued_while_paused > 0:
            self._queuing[proto] = None
        else:
            self._queuing.pop(proto, None)
        budget = self.limits.max_total_sendq
        while budget and self.total_queued > budget and self._queuing:
            worst = max(self._queuing, key=lambda p: p._queued_while_paused)
            self.log.warn(
                "output queued for all clients is over {budget} bytes; dropping {peer}, the most behind",
                budget=budget, peer=worst.member.peer if worst.member else "?",
            )
            worst.cut_off(f"the server's output budget is used up and you are the furthest behind; closing")

    def release(self, proto: ChatProtocol) -> None:
        if proto not in self.connections:
            return
        self.connections.discard(proto)
        self.unregistered.pop(proto, None)
        if proto._queued_while_paused:
            self.total_queued -= proto._queued_while_paused
            proto._queued_while_paused = 0
        self._queuing.pop(proto, None)
        origin = proto.origin
        if origin:
            self.per_host[origin] -= 1
            if self.per_host[origin] <= 0:
                del self.per_host[origin]
        if not self.connections and self._sweeper is not None:
            self._sweeper.stop()  # nothing to watch: no timer at all
            self._sweeper = None

    def _sweep(self) -> None:
        now = self.clock.seconds()
        for proto in list(self.connections):
            proto.check_timeouts(now)

    def close_all(self) -> defer.Deferred:
        """
        Tell every client the server is stopping and close it; connections
        that have not closed after the grace period (peers not reading) are
        aborted, so shutdown never hangs.
        """
        self.relay.closing = True  # no QUIT storm while everyone leaves
        live = list(self.connections)
        if live:
            self.log.info("closing {count} connections", count=len(live))
        for proto in live:
            proto.closed = defer.Deferred()
            proto.close("server-shutdown", "the server is shutting down", "server shutdown")
        waiting = defer.DeferredList([proto.closed for proto in live])

        def abort_stragglers() -> None:
            for proto in list(self.connections):
                proto.transport.abortConnection()

        straggler_call = self.clock.callLater(self.limits.shutdown_grace, abort_stragglers)

        def done(result):
            if straggler_call.active():
                straggler_call.cancel()
            return None

        return waiting.addCallback(done)

