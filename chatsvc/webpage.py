"""
The browser client's web site: the page's static files and the chat socket
(``webdoor.py``) on one port, on twisted.web.

Only the files shipped in ``chatsvc/web/`` are served, read once at
startup; no directory listing, no other path, no method but GET and HEAD.
Every response carries the headers of ``webheaders.py``.  A request must
name the relay by a host name it is reached by (``webnames.py``: loopback,
its own addresses, names given with ``--web-host`` or ``--web-origin``),
else it is refused with 421 before anything is served: a DNS-rebinding page
cannot reach a relay on 127.0.0.1 or an intranet address through a
visitor's browser.  Every socket counts against the relay's limits from the
moment it is accepted (``webentrance.py``).
"""

from __future__ import annotations

import json
import zlib
from importlib import resources

from twisted.web import resource, server

from chatsvc.hub import Hub
from chatsvc.webdoor import CHAT_PATH, ChatSocketResource, WebDoorFactory
from chatsvc.webentrance import WebChannel
from chatsvc.webheaders import CSP, WebHeaders, close_after, text_answer  # noqa: F401 -- CSP as before
from chatsvc.webnames import WebNames

#: Content types by file extension (the only kinds the page is made of).
_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".svg": b"image/svg+xml",
    ".json": b"application/json",
}
#: The methods the site answers; anything else is 405 with this Allow.
METHODS = (b"GET", b"HEAD")


def page_files() -> dict[str, bytes]:
    """The page's files, by name, from the package (and the word lists its passphrase meter ranks by)."""
    folder = resources.files("chatsvc") / "web"
    files = {
        entry.name: entry.read_bytes()
        for entry in folder.iterdir()
        if entry.is_file() and any(entry.name.endswith(ext) for ext in _TYPES)
    }
    files[STRENGTH_WORDS] = strength_words()
    return files


#: The ranked word lists the page's passphrase meter (``web/strength.js``) loads.
STRENGTH_WORDS = "strength-words.json"


def strength_words() -> bytes:
    """
    zxcvbn's ranked lists (common passwords, English words, names), as the
    terminal client's estimate uses them -- taken from the installed
    package when the relay starts, so the page ranks by the same lists
    without a copy in this repository.  Public data, no user input.
    """
    try:
        from zxcvbn.frequency_lists import FREQUENCY_LISTS
    except ImportError:  # (a dependency; without it the page's meter counts characters only)
        return b"{}"
    return json.dumps({name: " ".join(words) for name, words in FREQUENCY_LISTS.items()}).encode()


class _File(resource.Resource):
    """One of the page's files: revalidated by ETag (the page must not outlive an upgrade of the relay)."""

    isLeaf = True

    def __init__(self, name: str, body: bytes) -> None:
        super().__init__()
        self.body = body
        self.content_type = _TYPES["." + name.rsplit(".", 1)[-1]]
        # (a checksum, not a digest: an ETag only tells versions of our own file apart)
        self.etag = b'"%x-%08x"' % (len(body), zlib.crc32(body))


    def render_GET(self, request) -> bytes:
        request.setHeader(b"Content-Type", self.content_type)
        request.setHeader(b"Cache-Control", b"no-cache")
        request.setHeader(b"ETag", self.etag)
        # gzipped or not by Accept-Encoding: caches must keep them apart
        request.setHeader(b"Vary", b"Accept-Encoding")
        if self.etag in (request.getHeader(b"if-none-match") or b"").replace(b"W/", b"").split(b", "):
            request.setResponseCode(304)
            return b""
        return self.body

    render_HEAD = render_GET


class Root(resource.Resource):
    """/ is the page; /<file> its modules; /chat the socket -- for a request by a name the relay has."""

    def __init__(self, files: dict[str, bytes], chat: resource.Resource, names: WebNames, headers: WebHeaders) -> None:
        super().__init__()
        # gzip when the browser takes it: the page is about 100 KB, 35 KB so
        # (static files only: no secret is ever compressed with user input)
        self._files = {
            name.encode(): resource.EncodingResourceWrapper(_File(name, body), [server.GzipEncoderFactory()])
            for name, body in files.items()
        }
        self._chat = chat
        self.names = names
        self.headers = headers

    def getChildWithDefault(self, name: bytes, request):
        self.headers.apply(request)  # every response, whatever answers it
        refusal = getattr(request.channel, "refusal", None)
        if refusal is not None:
            close_after(request)
            return _Answer(503, refusal)
        if not self.names.host_allowed(request.getHeader(b"host")):
            return _Answer(421, self.names.misdirected(request.getHeader(b"host")))
        if request.method not in METHODS and name != CHAT_PATH:
            return _Answer(405, "this site only answers GET and HEAD", allow=b", ".join(METHODS))
        if request.postpath:
            return _Answer(404, "not found")
        if name == b"":
            return self._files.get(b"index.html", _Answer(404, "not found"))
        if name == CHAT_PATH:
            return self._chat
        return self._files.get(name, _Answer(404, "not found"))


class _Answer(resource.Resource):
    """A short text answer (an error), for any method."""

    isLeaf = True

    def __init__(self, status: int, text: str, allow: bytes | None = None) -> None:
        super().__init__()
        self.status, self.text, self.allow = status, text, allow

    def render(self, request) -> bytes:
        if self.allow is not None:
            request.setHeader(b"Allow", self.allow)
        return text_answer(request, self.status, self.text)


class WebRequest(server.Request):
    """A request that carries the site's headers even where twisted.web answers by itself (``OPTIONS *``)."""

    def process(self) -> None:
        if self.path == b"*":
            self.channel.site.headers.apply(self)
            self.setResponseCode(405)
            self.setHeader(b"Allow", b", ".join(METHODS))
            self.setHeader(b"Content-Length", b"0")
            self.finish()
            return
        super().process()


class WebSite(server.Site):
    noisy = False
    requestFactory = WebRequest

    def __init__(self, hub: Hub, origins: frozenset[str] = frozenset(), proxies: frozenset[str] = frozenset(),
                 hosts: frozenset[str] = frozenset(), hsts: int = 0, secure: bool = False) -> None:
        self.hub = hub
        self.origins = origins  # (the first is announced in CAPS page=)
        self.headers = WebHeaders(hsts)
        names = WebNames(hosts, origins, proxies, secure)
        self.sockets = WebDoorFactory(hub, names, self.headers)
        super().__init__(Root(page_files(), ChatSocketResource(self.sockets, names, self.headers), names, self.headers))
        # no idle timer of twisted.web's: it restarts on every byte; webentrance.py bounds requests instead
        self.timeOut = None

    def protocol(self) -> WebChannel:
        return WebChannel(self.hub, self.headers, self.sockets.names.proxies)

    def log(self, request) -> None:
        pass  # no access log: who loaded the page is nobody's business

    def close_all(self):
        return self.hub.close_all()
