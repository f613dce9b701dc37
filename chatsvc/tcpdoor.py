"""
The TCP (and TLS) front door: bytes in and out of a stream socket, framed
as ``\\n``-terminated lines for a connection core (``core.py``).

It does only what needs the transport: splitting lines (once per read, so
a big read costs linear time), output backpressure -- it is the
transport's streaming producer, counts what it must queue while the
socket's buffer is full, and has the client cut off past ``max_sendq`` --
and pausing reads when the core asks (the flood limit).

The fast path: while the client keeps up, what the relay calls to send to
it (``Member.send``) *is* the transport's ``write``, with nothing of ours in
between -- fan-out to a thousand members is a thousand plain writes.  When
the transport's buffer fills, or the connection closes, the door puts its
own accounting ``send`` there instead, and back when the buffer drains.

A connection whose first line is ``STREAM`` (``streams.py``) stops being
lines at all: once paired, its bytes go to its partner's transport as they
come, each transport the other's producer.
"""

from __future__ import annotations

import time

from twisted.internet import interfaces, protocol
from twisted.logger import Logger
from zope.interface import implementer

from chatsvc.core import Connection, IDoor, queue_or_cut
from chatsvc.hub import Hub, Limits
from chatsvc.relay import Relay
from chatsvc.streams import HOLD_BYTES


@implementer(interfaces.IProtocol, interfaces.IPushProducer, IDoor)
class LineDoor:
    """One TCP or TLS connection, framed as lines for its L{Connection}."""

    # Not a subclass of Protocol, so __slots__ really leave out the
    # instance __dict__: the relay holds one of these per connection.
    __slots__ = (
        "factory", "transport", "connected", "conn", "peer", "host", "_buffer", "_paused", "_queued", "_reported",
        "_first", "_partner", "_held", "_bytes", "_since",
    )

    log = Logger()

    delimiter = b"\n"
    stream_only = False  # True on a linked relay's link port (streamlink.py)

    def __init__(self, factory: "ChatFactory") -> None:
        self.factory = factory
        self.transport = None
        self.connected = 0
        self.conn: Connection | None = None
        self.peer = "?"
        self.host: str | None = None
        self._buffer = b""
        self._paused = False  # the transport's buffer is full
        self._queued = 0  # bytes written while it was
        self._reported = 0  # what the hub was last told of them
        self._first = True  # no line yet: it may be STREAM, after which bytes are raw
        self._partner: LineDoor | None = None  # the other end of a spliced stream
        self._held = b""  # a stream's bytes that came before its partner
        self._bytes = 0  # a stream's bytes passed on
        self._since = 0.0
    # --- IProtocol ------------------------------------------------------------------

    def makeConnection(self, transport) -> None:
        self.connected = 1
        self.transport = transport
        self.connectionMade()

    def connectionMade(self) -> None:
        address = self.transport.getPeer()
        self.host = getattr(address, "host", None)
        self.peer = f"{self.host}:{getattr(address, 'port', '')}" if self.host else str(address)
        self.conn = Connection(self.factory.hub, self)
        if not self.conn.open():
            return
        self._fast(True)
        # Chat lines are small and latency matters; Twisted already batches
        # writes per reactor turn, so Nagle's algorithm only adds delay.
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            try:
                set_no_delay(True)
            except OSError:
                pass
        self.transport.registerProducer(self, True)

    def dataReceived(self, data: bytes) -> None:
        conn = self.conn
        if self._partner is not None:
            self._bytes += len(data)
            self._partner.raw_write(data)
            return
        if self.transport.disconnecting or not conn.admitted:
            return
        if conn.streaming:
            self._held += data  # its partner is not here yet
            if len(self._held) > HOLD_BYTES:
                self.pause_reading()  # resumed once spliced
            return
        if self._first:
            # The first line alone: if it is STREAM, what follows is raw.
            head, found, rest = (self._buffer + data).partition(self.delimiter)
            if not found:
                self._buffer = head
                if len(head) > conn.limits.max_line + 1:
                    self._buffer = b""
                    conn.lines_received([None])
                return
            self._first = False
            self._buffer = b""
            conn.lines_received([head])
            if not rest or self.transport.disconnecting:
                return
            if conn.streaming:
                self.dataReceived(rest)
                return
            data = rest
        lines: list[bytes | None] = (self._buffer + data).split(self.delimiter)
        self._buffer = lines.pop()
        # A trailing "\r" is allowed in lines, so the unfinished line may
        # hold max_line + 1 bytes before it must end.
        if len(self._buffer) > conn.limits.max_line + 1:
            self._buffer = b""
            lines.append(None)  # refused in order, after the lines before it
        conn.lines_received(lines)

    def connectionLost(self, reason=protocol.connectionDone) -> None:
        self.connected = 0
        unsplice(self)
        self.conn.lost()

    # --- IDoor ----------------------------------------------------------------------------

    @property
    def closing(self) -> bool:
        return bool(self.transport.disconnecting)

    def send(self, data: bytes) -> None:
        if self.transport.disconnecting or self._partner is not None:
            # closing: what it has not read by now is moot; a spliced
            # stream carries its partner's bytes and nothing of ours
            return
        if self._paused and not queue_or_cut(self, len(data)):
            return
        self.transport.write(data)

    def close(self, abort: bool) -> None:
        self._fast(False)  # nothing more goes out through the fast path
        if abort:
            self.transport.abortConnection()
        else:
            self.transport.loseConnection()

    def splice(self, other) -> None:
        splice(self, other)

    # --- a stream end (splice) ----------------------------------------------------------------

    def raw_write(self, data: bytes) -> None:
        """The partner's bytes, as they came."""
        self.transport.write(data)

    def end_stream(self) -> None:
        """The partner is gone: close once what is queued has gone out."""
        self.transport.loseConnection()

    def pause_reading(self) -> None:
        if not self.transport.disconnecting:
            self.transport.pauseProducing()

    def resume_reading(self) -> None:
        if not self.transport.disconnecting:
            self.transport.resumeProducing()

    # --- IPushProducer: the transport says whether its buffer is full ---------------------

    def pauseProducing(self) -> None:
        # This client is not keeping up.  (Transports call this again on
        # every write while full.)  Reading from it goes on: a TLS transport
        # also pauses us until its handshake is done, which needs reading.
        if not self._paused:
            self._paused = True
            self._queued = self._reported = 0
            self._fast(False)

    def resumeProducing(self) -> None:
        self._paused = False
        if not self.transport.disconnecting:
            self._fast(True)
        self._queued = 0
        if self._reported:
            self._reported = 0
            self.conn.hub.queued(self.conn, 0)

    def stopProducing(self) -> None:
        pass

    def _fast(self, on: bool) -> None:
        """Let the relay write straight to the transport, or through send()."""
        member = self.conn.member if self.conn is not None else None
        if member is not None:
            member.send = self.transport.write if on else self.send


def splice(one, other) -> None:
    """
    Join two stream ends, whatever their doors (TCP, TLS, WebSocket): each
    one's bytes go to the other (``raw_write``), and each one's transport
    is the other's producer -- a receiver that reads slowly stops the relay
    reading from its sender, backpressure end to end.
    """
    for a, b in ((one, other), (other, one)):
        a._partner = b
        a._fast(False)
        a._since = time.monotonic()
        a.transport.unregisterProducer()  # it was the door's; now the partner's
    for a, b in ((one, other), (other, one)):
        b.transport.registerProducer(a.transport, True)
    for a, b in ((one, other), (other, one)):
        held, a._held = a._held, b""
        if held:
            a._bytes += len(held)
            b.raw_write(held)
        a.transport.resumeProducing()


def unsplice(end) -> None:
    """One end of a stream is gone: say so, and close its partner once what is queued for it went out."""
    partner, end._partner = end._partner, None
    if partner is not None:
        _streams_log.info(
            "stream from {peer} ended: {size} bytes in {seconds:.1f} s",
            peer=end.peer, size=end._bytes, seconds=time.monotonic() - end._since,
        )
        partner.end_stream()


_streams_log = Logger(namespace="chatsvc.streams")


class ChatFactory(protocol.ServerFactory):
    """The TCP/TLS door of one relay: builds a L{LineDoor} per connection."""

    noisy = False  # ListeningService already logs where we listen

    def __init__(self, relay: Relay | Hub, limits: Limits | None = None, clock=None) -> None:
        self.hub = relay if isinstance(relay, Hub) else Hub(relay, limits, clock)

    def buildProtocol(self, addr) -> LineDoor:
        return LineDoor(self)

    def startFactory(self) -> None:
        self.hub.start()

    def stopFactory(self) -> None:
        self.hub.stop()

    # The hub's, seen from the door (tests and the tap use them).
    @property
    def relay(self) -> Relay:
        return self.hub.relay

    @property
    def limits(self) -> Limits:
        return self.hub.limits

    def close_all(self):
        return self.hub.close_all()
