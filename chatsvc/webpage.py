"""
The browser client's web site: the page's static files and the chat socket
(``webdoor.py``) on one port, on twisted.web.

Only the files shipped in ``chatsvc/web/`` are served, read once at
startup; no directory listing, no other path.  Every response carries a
strict Content-Security-Policy (no inline script or style, no eval, no
framing; the page may connect only to its own host) and the other headers
that keep a page from being sniffed, framed or leaking its address.
"""

from __future__ import annotations

from importlib import resources

from twisted.web import resource, server

from chatsvc.hub import Hub
from chatsvc.webdoor import CHAT_PATH, ChatSocketResource, WebDoorFactory

#: Content types by file extension (the only kinds the page is made of).
_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".svg": b"image/svg+xml",
    ".json": b"application/json",
}

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; "
    # blob: for thumbnails of received images; data: never (an image is
    # only ever shown from bytes the client has verified)
    "img-src 'self' blob:; connect-src 'self' blob:; manifest-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

HEADERS = {
    b"Content-Security-Policy": CSP.encode(),
    b"X-Content-Type-Options": b"nosniff",
    b"X-Frame-Options": b"DENY",
    b"Referrer-Policy": b"no-referrer",
    b"Cross-Origin-Opener-Policy": b"same-origin",
    b"Cross-Origin-Resource-Policy": b"same-origin",
    b"Permissions-Policy": b"camera=(), microphone=(), geolocation=()",
    # The page is small and must not outlive an upgrade of the relay.
    b"Cache-Control": b"no-cache",
}


def secure(request) -> None:
    for name, value in HEADERS.items():
        request.setHeader(name, value)


def page_files() -> dict[str, bytes]:
    """The page's files, by name, from the package."""
    folder = resources.files("chatsvc") / "web"
    return {
        entry.name: entry.read_bytes()
        for entry in folder.iterdir()
        if entry.is_file() and any(entry.name.endswith(ext) for ext in _TYPES)
    }


class _File(resource.Resource):
    isLeaf = True

    def __init__(self, name: str, body: bytes) -> None:
        super().__init__()
        self.body = body
        self.content_type = _TYPES["." + name.rsplit(".", 1)[-1]]

    def render_GET(self, request) -> bytes:
        secure(request)
        request.setHeader(b"Content-Type", self.content_type)
        return self.body


class _NotFound(resource.Resource):
    isLeaf = True

    def render(self, request) -> bytes:
        secure(request)
        request.setResponseCode(404)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        return b"not found\n"


class Root(resource.Resource):
    """/ is the page; /<file> its modules; /chat the socket."""

    def __init__(self, files: dict[str, bytes], chat: resource.Resource) -> None:
        super().__init__()
        # gzip when the browser takes it: the page is about 95 KB, 31 KB so
        # (static files only: no secret is ever compressed with user input)
        self._files = {
            name.encode(): resource.EncodingResourceWrapper(_File(name, body), [server.GzipEncoderFactory()])
            for name, body in files.items()
        }
        self._index = self._files.get(b"index.html", _NotFound())
        self._chat = chat

    def getChild(self, name: bytes, request):
        if name == b"" and not request.postpath:
            return self._index
        if name == CHAT_PATH and not request.postpath:
            return self._chat
        if not request.postpath:
            return self._files.get(name, _NotFound())
        return _NotFound()

    def render(self, request) -> bytes:
        return self._index.render(request)


class WebSite(server.Site):
    noisy = False

    def __init__(self, hub: Hub, origins: frozenset[str] = frozenset(), proxies: frozenset[str] = frozenset()) -> None:
        self.sockets = WebDoorFactory(hub, origins, proxies)
        super().__init__(Root(page_files(), ChatSocketResource(self.sockets)))

    def log(self, request) -> None:
        pass  # no access log: who loaded the page is nobody's business

    def close_all(self):
        return self.sockets.hub.close_all()
