"""
The WebSocket front door: the browser client's way in.

Each WebSocket text message is one protocol-v1 line, without its ``\\n``;
each connection is one more member of the same relay, through the same
connection core (``core.py``) as TCP clients -- the same limits, the same
replies.  Nothing here reads or changes a payload.

Built on autobahn's Twisted flavour rather than ``twisted.web.websocket``:
autobahn refuses an oversized message while it arrives (close code 1009)
instead of buffering it whole, validates UTF-8 (1007), lets us refuse a
handshake by its Origin, and closes cleanly; Twisted's module (26.10)
buffers messages of any size, has no Origin hook and could leave a closed
connection in CLOSE-WAIT.  What a client sees is in docs/protocol.md,
*Over WebSocket*.

What this module adds to autobahn: a handshake checked before autobahn sees
it (HTTP/1.1, a real upgrade, one Origin that ``webnames.py`` allows --
each refusal a plain answer with the site's headers, never autobahn's
banner page or its bare 400), the browser's address from a trusted reverse proxy,
output accounting (the same send-queue limits as a TCP client, from the
transport's producer callbacks), reading paused by the flood limit, and
bulk-stream ends whose bytes travel as binary messages.  ``webpage.py``
serves the page and this socket on one port.
"""

from __future__ import annotations

import ipaddress

import txaio
from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet import interfaces
from twisted.logger import Logger
from zope.interface import implementer

from chatsvc.core import Connection
from chatsvc.doors import IDoor, SendMeter, StreamEnd
from chatsvc.grammar import error_line
from chatsvc.hub import Hub
from chatsvc.webheaders import WebHeaders, close_after, text_answer
from chatsvc.webnames import WebNames
from chatsvc.streams import unsplice

_log = Logger(namespace="chatsvc.webdoor")

# autobahn logs every frame at debug level; the relay's log is for people.
txaio.set_global_log_level("warn")

#: Where the page opens its socket.
CHAT_PATH = b"chat"

#: Close codes (RFC 6455 7.4.1; autobahn sends 1009 and 1007 itself).  The
#: standard "unsupported data" is 1003, but autobahn lets an application
#: send only 1000 and 3000-4999: "binary messages are not chat lines" is 4003.
CLOSE_NORMAL = 1000
CLOSE_BINARY = 4003

#: The largest binary message a stream end may send (the page sends 64 KiB).
STREAM_MESSAGE_MAX = 256 * 1024



def forwarded_for(peer, headers: dict, proxies: frozenset[str]) -> str | None:
    """
    The client's address as a trusted reverse proxy reports it: the last
    entry of X-Forwarded-For (the one that proxy added; earlier ones are
    whatever the client claimed).  None unless the connection comes from
    one of ``proxies`` and the entry is an IP address.
    """
    host = getattr(peer, "host", None)
    if not proxies or host not in proxies:
        return None
    value = headers.get("x-forwarded-for", "")
    last = value.split(",")[-1].strip()
    try:
        return str(ipaddress.ip_address(last))
    except ValueError:
        return None


@implementer(interfaces.IPushProducer)
class _OutputWatch:
    """The transport tells us here when its buffer fills and drains."""

    __slots__ = ("door",)

    def __init__(self, door: "WebDoor") -> None:
        self.door = door

    def pauseProducing(self) -> None:
        self.door.meter.pause()

    def resumeProducing(self) -> None:
        self.door.meter.resume(self.door.conn)

    def stopProducing(self) -> None:
        pass


@implementer(IDoor)
class WebDoor(WebSocketServerProtocol):
    """One browser (or other WebSocket client), as lines for its L{Connection}."""

    stream_only = False  # only a linked relay's link port takes stream ends alone

    # (not ``log``: autobahn's own logger lives there, and it is chatty)

    conn: Connection | None = None
    peer = "?"
    host: str | None = None
    _closing = False
    _forwarded: str | None = None  # the browser's address, from a trusted proxy

    def __init__(self) -> None:
        super().__init__()
        self.meter = SendMeter()  # output queued while the browser is behind
        self.stream = StreamEnd()  # as one end of a bulk stream: binary messages carry its bytes

    # --- autobahn's callbacks --------------------------------------------------------

    def onConnect(self, request):
        # (ChatSocketResource checked the handshake already; this is the same
        # rule again, for a factory used without it)
        factory = self.factory
        peer = getattr(self.transport.getPeer(), "host", None)
        self._forwarded = forwarded_for(self.transport.getPeer(), request.headers, factory.names.proxies)
        origin = request.headers.get("origin")
        if origin is not None and not factory.names.origin_allowed(
                origin, request.headers.get("host"), peer, request.headers.get("x-forwarded-proto")):
            raise ConnectionDeny(ConnectionDeny.FORBIDDEN, "this chat only accepts its own page (Origin)")
        return None

    def onOpen(self) -> None:
        address = self.transport.getPeer()
        self.host = getattr(address, "host", None)
        if self._forwarded:
            # Behind a trusted reverse proxy: the browser's own address, so
            # per-address limits hold per person, not for everyone at once.
            self.host = self._forwarded
        self.peer = f"{self.host}:{getattr(address, 'port', '')} (web)" if self.host else str(address)
        # The HTTP channel was the transport's producer until the upgrade;
        # now we want its pause/resume (our send queue).
        if getattr(self.transport, "producer", None) is not None:
            self.transport.unregisterProducer()
        self.transport.registerProducer(_OutputWatch(self), True)
        self.conn = Connection(self.factory.hub, self)
        self.conn.open()

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        conn = self.conn
        if conn is None or self._closing:
            return
        if conn.streaming:
            # A bulk stream: binary messages are its bytes (a text message
            # now is a mistake).  Before the partner comes, they wait here,
            # up to HOLD_BYTES; then reading pauses until it comes.
            if not isBinary:
                self._close_with(CLOSE_BINARY, "a stream carries binary messages only")
            elif self.stream.partner is not None:
                self.stream.pass_on(payload)
            elif self.stream.hold(payload):
                self.pause_reading()
            return
        if isBinary:
            _log.info("{peer} sent a binary message; closing", peer=self.peer)
            self._close_with(CLOSE_BINARY, "binary messages are not chat lines: send each line as a text message")
            return
        # One message, one line; a newline inside would smuggle a second.
        if b"\n" in payload:
            conn.send_line(error_line("bad-syntax", "one line per message: no line breaks inside; dropped"))
            return
        conn.lines_received([payload])
        if conn.streaming:
            # Now a bulk stream: its binary messages are file bytes, not
            # lines, so the line limit gives way to the stream's own.
            self.maxMessagePayloadSize = self.maxFramePayloadSize = STREAM_MESSAGE_MAX

    def onClose(self, wasClean: bool, code, reason) -> None:
        self._closing = True
        unsplice(self)
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.lost()

    # --- IDoor ---------------------------------------------------------------------------

    @property
    def closing(self) -> bool:
        # closing too once the browser has started its close handshake
        return self._closing or self.state != WebSocketServerProtocol.STATE_OPEN

    def send(self, data: bytes) -> None:
        if self.closing or self.stream.partner is not None:
            return  # a spliced stream carries its partner's bytes, nothing of ours
        if self.meter.paused and not self.meter.take(self.conn, self, len(data)):
            return
        self.sendMessage(data[:-1] if data.endswith(b"\n") else data, isBinary=False)

    def close(self, abort: bool) -> None:
        if abort:
            self._closing = True
            if self.transport is not None:
                self.transport.abortConnection()
            return
        self._close_with(CLOSE_NORMAL, None)

    def _close_with(self, code: int, reason: str | None) -> None:
        if self._closing:
            return
        self._closing = True
        self.sendClose(code, reason)

    # --- a stream end (streams.splice) ----------------------------------------------------

    def raw_write(self, data: bytes) -> None:
        if not self.closing:
            self.sendMessage(data, isBinary=True)

    def end_stream(self) -> None:
        self._close_with(CLOSE_NORMAL, None)

    def fast_path(self, on: bool) -> None:
        pass  # no fast path to switch off: every line goes through send()

    def pause_reading(self) -> None:
        if not self._closing:
            self.transport.pauseProducing()

    def resume_reading(self) -> None:
        if not self._closing:
            self.transport.resumeProducing()


class WebDoorFactory(WebSocketServerFactory):
    """
    WebSocket connections for one relay's hub.

    @param names: the host names and origins the web port accepts (``webnames.py``).
    @param headers: the site's headers, sent with the handshake's answer too.
    """

    protocol = WebDoor
    noisy = False

    def __init__(self, hub: Hub, names: WebNames | None = None, headers: WebHeaders | None = None) -> None:
        headers = headers or WebHeaders()
        # no Server header naming autobahn and its version
        super().__init__(server=None, headers={k.decode(): v.decode() for k, v in headers.headers.items() if k != b"Server"})
        self.hub = hub
        self.names = names or WebNames()
        limits = hub.limits
        self.setProtocolOptions(
            # A message is a line: refused while it arrives (close 1009),
            # never buffered past the relay's line limit.
            maxMessagePayloadSize=limits.max_line,
            maxFramePayloadSize=limits.max_line,
            # Origins are checked before the handshake (ChatSocketResource).
            allowedOrigins=["*"],
            # No status page of autobahn's for a GET without an upgrade.
            webStatus=False,
            # The chat's own PING/idle timeouts apply as to TCP clients;
            # these only bound the WebSocket handshakes themselves.
            openHandshakeTimeout=10,
            # A broken rule (a message over the limit, invalid UTF-8) is
            # answered with a close frame saying which, not a bare drop.
            failByDrop=False,
            closeHandshakeTimeout=5,
            # No permessage-deflate: ciphertext does not compress, and
            # compression would let a small frame inflate past the limit.
            perMessageCompressionAccept=lambda offers: None,
        )


class ChatSocketResource(WebSocketResource):
    """
    The socket at /chat, inside the page's web site.  The handshake is
    checked here first, each refusal answered with the site's headers: a
    GET without an upgrade gets 426, an upgrade over HTTP/1.0 505, a page
    of another origin (or ``null``, or two Origin headers) 403.
    """

    def __init__(self, factory: WebDoorFactory, names: WebNames, headers: WebHeaders) -> None:
        super().__init__(factory)
        self.names = names
        self.headers = headers

    def render(self, request):
        refusal = self.refusal(request)
        if refusal is not None:
            status, text = refusal
            if status == 426:
                request.setHeader(b"Upgrade", b"websocket")
            close_after(request)
            return text_answer(request, status, text)
        # The HTTP channel's idle timer would otherwise still run on a
        # connection it no longer owns; and its place in the hub goes to
        # the chat connection the WebSocket makes.
        request.channel.setTimeout(None)
        upgraded = getattr(request.channel, "upgraded", None)
        if upgraded is not None:
            upgraded()
        return super().render(request)

    def refusal(self, request) -> tuple[int, str] | None:
        headers = request.requestHeaders
        upgrade = (request.getHeader(b"upgrade") or b"").lower()
        connection = [t.strip().lower() for t in (request.getHeader(b"connection") or b"").split(b",")]
        if request.method != b"GET" or upgrade != b"websocket" or b"upgrade" not in connection:
            return 426, "this is the chat's WebSocket: open the page at / instead"
        if request.clientproto != b"HTTP/1.1":
            return 505, "a WebSocket needs HTTP/1.1 (RFC 6455)"
        origins = headers.getRawHeaders(b"origin") or []
        if len(origins) > 1 or (origins and b"," in origins[0]):
            return 403, "one Origin header, please"
        if origins:
            origin = origins[0].decode("latin-1")
            peer = getattr(request.getClientAddress(), "host", None)
            proto = request.getHeader(b"x-forwarded-proto")
            if not self.names.origin_allowed(origin, request.getHeader(b"host"), peer,
                                             proto.decode("latin-1") if proto else None):
                _log.info("refused a WebSocket from {peer}: origin {origin!r} is not this page's",
                          peer=peer, origin=origin[:100])
                return 403, "this chat only accepts its own page (Origin)"
        return None
