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

from twisted.internet import interfaces, protocol
from twisted.logger import Logger
from zope.interface import implementer

from chatsvc.core import Connection
from chatsvc.doors import IDoor, SendMeter, StreamEnd
from chatsvc.hub import Hub, Limits
from chatsvc.relay import Relay
from chatsvc.streams import unsplice


@implementer(interfaces.IProtocol, interfaces.IPushProducer, IDoor)
class LineDoor:
    """One TCP or TLS connection, framed as lines for its L{Connection}."""

    # Not a subclass of Protocol, so __slots__ really leave out the
    # instance __dict__: the relay holds one of these per connection.
    __slots__ = ("factory", "transport", "connected", "conn", "peer", "host", "meter", "stream", "_buffer", "_first")

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
        self.meter = SendMeter()  # output queued while the client is behind
        self.stream = StreamEnd()  # as one end of a bulk stream
        self._buffer = b""
        self._first = True  # no line yet: it may be STREAM, after which bytes are raw

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
        self.fast_path(True)
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
        if self.stream.partner is not None:
            self.stream.pass_on(data)
            return
        if self.transport.disconnecting or not conn.admitted:
            return
        if conn.streaming:
            if self.stream.hold(data):  # its partner is not here yet
                self.pause_reading()  # resumed once spliced
            return
        if self._first:
            data = self._first_line(data)
            if not data:
                return
        lines: list[bytes | None] = (self._buffer + data).split(self.delimiter)
        self._buffer = lines.pop()
        # A trailing "\r" is allowed in lines, so the unfinished line may
        # hold max_line + 1 bytes before it must end.
        if len(self._buffer) > conn.limits.max_line + 1:
            self._buffer = b""
            lines.append(None)  # refused in order, after the lines before it
        conn.lines_received(lines)

    def _first_line(self, data: bytes) -> bytes:
        """The first line alone: if it is STREAM, what follows is raw.  Returns what is left to frame."""
        conn = self.conn
        head, found, rest = (self._buffer + data).partition(self.delimiter)
        if not found:
            self._buffer = head
            if len(head) > conn.limits.max_line + 1:
                self._buffer = b""
                conn.lines_received([None])
            return b""
        self._first = False
        self._buffer = b""
        conn.lines_received([head])
        if rest and not self.transport.disconnecting and conn.streaming:
            self.dataReceived(rest)
            return b""
        return rest if not self.transport.disconnecting else b""

    def connectionLost(self, reason=protocol.connectionDone) -> None:
        self.connected = 0
        unsplice(self)
        self.conn.lost()

    # --- IDoor ----------------------------------------------------------------------------

    @property
    def closing(self) -> bool:
        return bool(self.transport.disconnecting)

    def send(self, data: bytes) -> None:
        if self.transport.disconnecting or self.stream.partner is not None:
            # closing: what it has not read by now is moot; a spliced
            # stream carries its partner's bytes and nothing of ours
            return
        if self.meter.paused and not self.meter.take(self.conn, self, len(data)):
            return
        self.transport.write(data)

    def close(self, abort: bool) -> None:
        self.fast_path(False)  # nothing more goes out through the fast path
        if abort:
            self.transport.abortConnection()
        else:
            self.transport.loseConnection()

    def raw_write(self, data: bytes) -> None:
        """A stream end: the partner's bytes, as they came."""
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

    def fast_path(self, on: bool) -> None:
        """Let the relay write straight to the transport (``Member.route``), or through send()."""
        member = self.conn.member if self.conn is not None else None
        if member is not None:
            member.route(self.transport.write if on else self.send)

    # --- IPushProducer: the transport says whether its buffer is full ---------------------

    def pauseProducing(self) -> None:
        # This client is not keeping up.  (Transports call this again on
        # every write while full.)  Reading from it goes on: a TLS transport
        # also pauses us until its handshake is done, which needs reading.
        if not self.meter.paused:
            self.meter.pause()
            self.fast_path(False)

    def resumeProducing(self) -> None:
        if not self.transport.disconnecting and self.stream.partner is None:
            self.fast_path(True)
        self.meter.resume(self.conn)

    def stopProducing(self) -> None:
        pass


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
