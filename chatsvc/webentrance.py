"""
The web port's HTTP phase, held to the same limits as every other door.

twisted.web alone serves a connection until it goes idle, restarts its idle
timer on every byte (so a request trickled a header a minute never ends),
and counts nothing.  Here every socket the web port accepts takes a place in
the relay's hub from the moment it is accepted -- per address and in all,
like a chat connection, so half-sent requests cannot crowd out chat users --
and each request must arrive whole (request line, headers, the upgrade)
within the registration timeout, however it trickles.  A socket that becomes
a WebSocket hands its place to its chat connection (``webdoor.py``).

Responses this module writes itself (refusals, and the channel's own 400)
carry the same security headers as the page (``webheaders.py``).
"""

from __future__ import annotations

from twisted.internet import interfaces
from twisted.logger import Logger
from twisted.web import http
from zope.interface import implementer

from chatsvc.webheaders import WebHeaders

_log = Logger(namespace="chatsvc.web")

#: After a refusal, how long what the client still sends is read and dropped before the socket is closed.
LINGER = 2.0


class _PlaceDoor:
    """What the hub needs of a web socket's place: its peer, and a way to close it."""

    __slots__ = ("channel", "peer", "host")

    def __init__(self, channel: "WebChannel", host: str | None, peer: str) -> None:
        self.channel = channel
        self.host = host
        self.peer = peer

    @property
    def closing(self) -> bool:
        return self.channel.transport is None or bool(self.channel.transport.disconnecting)

    def close(self, abort: bool) -> None:
        transport = self.channel.transport
        if transport is not None:
            transport.abortConnection() if abort else transport.loseConnection()


class Visitor:
    """
    A web socket still in its HTTP phase, as the hub counts it (``Hub.admit``):
    an origin for the per-address limit, an age for "full: drop the oldest
    that never registered", and a deadline for the request under way.
    """

    __slots__ = ("hub", "door", "connected_at", "deadline", "closed", "origin")

    def __init__(self, hub, door: _PlaceDoor, counted: bool = True) -> None:
        from chatsvc.netinfo import origin_of

        self.hub = hub
        self.door = door
        # (a trusted proxy's socket is counted per address only once its
        # request says whose it is: X-Forwarded-For)
        self.origin = origin_of(door.host) if counted else None
        self.connected_at = hub.clock.seconds()
        self.deadline: float | None = None
        self.closed = None  # a Deferred made by Hub.close_all, fired on close

    def check_timeouts(self, now: float) -> None:
        """The hub's once-a-second sweep: a request not whole by its deadline is answered 408 and closed."""
        if self.deadline is not None and now >= self.deadline:
            self.deadline = None
            self.door.channel.timed_out()

    def close(self, code: str, text: str, quit_reason: str, abort: bool = False) -> None:
        self.door.close(True)


@implementer(interfaces.IHalfCloseableProtocol)
class WebChannel(http.HTTPChannel):
    """An HTTP connection to the web port that holds a place in the hub while it is one."""

    def __init__(self, hub, headers: WebHeaders, proxies: frozenset = frozenset()) -> None:
        super().__init__()
        self.hub = hub
        self.headers = headers
        self.proxies = proxies
        self.visitor: Visitor | None = None
        #: why the request under way is refused (the place it would take is over a limit)
        self.refusal: str | None = None

    @property
    def request_timeout(self) -> float:
        return self.hub.limits.register_timeout

    def connectionMade(self) -> None:
        super().connectionMade()
        address = self.transport.getPeer()
        host = getattr(address, "host", None)
        visitor = Visitor(self.hub, _PlaceDoor(self, host, f"{host}:{getattr(address, 'port', '')} (http)"),
                          counted=host not in self.proxies)
        refusal = self.hub.admit(visitor)
        if refusal is not None:
            code, text = refusal
            _log.info("refused {peer}: {code}", peer=visitor.door.peer, code=code)
            self._refuse(503, text)
            return
        self.visitor = visitor
        self._arm()

    def _arm(self) -> None:
        if self.visitor is not None and self.request_timeout:
            self.visitor.deadline = self.hub.clock.seconds() + self.request_timeout

    def allHeadersReceived(self) -> None:
        super().allHeadersReceived()
        if self.visitor is not None:
            self.visitor.deadline = None  # the request arrived whole
            if self.visitor.door.host in self.proxies:
                self._count_forwarded()

    def _count_forwarded(self) -> None:
        """From a trusted proxy: the place counts against the browser's own address now."""
        from chatsvc.webdoor import forwarded_for

        request = self.requests[-1]
        headers = {k.decode("latin-1").lower(): b",".join(v).decode("latin-1")
                   for k, v in request.requestHeaders.getAllRawHeaders()}
        browser = forwarded_for(self.transport.getPeer(), headers, self.proxies)
        if browser is None or self.visitor.origin is not None:
            return
        old = self.visitor
        self.hub.release(old)
        self.visitor = Visitor(self.hub, _PlaceDoor(self, browser, f"{browser} (http, via {old.door.host})"))
        refusal = self.hub.admit(self.visitor)
        if refusal is not None:
            self.visitor = None
            self.refusal = refusal[1]  # the site answers this request 503, and the connection ends

    def requestDone(self, request) -> None:
        super().requestDone(request)
        if self.persistent:
            self._arm()  # the next request on this connection has its own deadline

    def timed_out(self) -> None:
        if self._lingering:
            self.transport.abortConnection()  # it never read our answer and closed
            return
        _log.info("{peer} did not send a whole request within {seconds:g} s; closing",
                  peer=self.visitor.door.peer, seconds=self.request_timeout)
        self._refuse(408, f"no whole request within {self.request_timeout:g} seconds")

    def upgraded(self) -> None:
        """The socket is a WebSocket now: its chat connection takes a place of its own."""
        visitor, self.visitor = self.visitor, None
        if visitor is not None:
            self.hub.release(visitor)

    def connectionLost(self, reason) -> None:
        visitor, self.visitor = self.visitor, None
        if visitor is not None:
            self.hub.release(visitor)
            if visitor.closed is not None:
                visitor.closed.callback(None)
        super().connectionLost(reason)

    def _respondToBadRequestAndDisconnect(self) -> None:
        # (twisted.web's own answer to a malformed request or one whose
        # headers are too big: a bare "400" with no headers at all)
        if self._receivedHeaderSize > self.totalHeadersSize:
            self._refuse(431, f"the request line and headers are over {self.totalHeadersSize // 1024} KiB")
        else:
            self._refuse(400, "a malformed request")

    def lineLengthExceeded(self, line: bytes) -> None:
        # (LineReceiver's own would close at once, with no answer at all)
        self._refuse(431, f"a request line or header over {self.MAX_LENGTH // 1024} KiB")

    _lingering = False

    def _refuse(self, status: int, text: str) -> None:
        """Answer and close -- lingering: what the client still sends is read and dropped for a moment, so
        closing with unread bytes does not reset the connection before it reads the answer."""
        if self.transport is None or self.transport.disconnecting or self._lingering:
            return
        self._lingering = True
        self.transport.write(self.headers.plain(status, text))
        half_close = getattr(self.transport, "loseWriteConnection", None)
        if self.visitor is None or half_close is None:
            self.transport.loseConnection()
            return
        half_close()
        self.visitor.deadline = self.hub.clock.seconds() + LINGER

    def dataReceived(self, data: bytes) -> None:
        if not self._lingering:
            super().dataReceived(data)

    def lineReceived(self, line: bytes):
        if self._lingering:
            return "refused"  # (stops the lines still in this read)
        return super().lineReceived(line)

    def readConnectionLost(self) -> None:
        self.transport.loseConnection()  # (half-closed by the client: done)

    def writeConnectionLost(self) -> None:
        pass  # our answer is out; what the client still sends is read and dropped
