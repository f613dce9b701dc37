"""
The headers every response of the web port carries -- the page, its files,
refusals, errors, twisted.web's own 400 and the WebSocket handshake alike:
a strict Content-Security-Policy (no inline script or style, no eval, no
framing; the page may connect only to its own host), ``nosniff``, no
framing, no referrer, and a server banner that names no library version.
HSTS only when asked for (``--web-hsts``): the self-signed flow of docs/page.md
would lock a browser out otherwise.
"""

from __future__ import annotations

from http import HTTPStatus

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; "
    # blob: for thumbnails of received images; data: never (an image is
    # only ever shown from bytes the client has verified)
    "img-src 'self' blob:; connect-src 'self' blob:; manifest-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

#: What a response says it is served by.
SERVER = b"chatsvc"

SECURITY = {
    b"Content-Security-Policy": CSP.encode(),
    b"X-Content-Type-Options": b"nosniff",
    b"X-Frame-Options": b"DENY",
    b"Referrer-Policy": b"no-referrer",
    b"Cross-Origin-Opener-Policy": b"same-origin",
    b"Cross-Origin-Resource-Policy": b"same-origin",
    b"Permissions-Policy": b"camera=(), microphone=(), geolocation=()",
}


class WebHeaders:
    """One web port's headers (``hsts``: seconds of Strict-Transport-Security, 0 for none)."""

    def __init__(self, hsts: int = 0) -> None:
        self.headers = dict(SECURITY)
        self.headers[b"Server"] = SERVER
        if hsts:
            self.headers[b"Strict-Transport-Security"] = b"max-age=%d" % hsts

    def apply(self, request) -> None:
        for name, value in self.headers.items():
            request.setHeader(name, value)

    def plain(self, status: int, text: str, extra: dict[bytes, bytes] | None = None) -> bytes:
        """A whole HTTP/1.1 response with a short text body, written straight to a transport."""
        body = (text + "\n").encode("utf-8")
        reason = HTTPStatus(status).phrase.encode("ascii")
        lines = [b"HTTP/1.1 %d %s" % (status, reason)]
        for name, value in {**self.headers, b"Content-Type": b"text/plain; charset=utf-8",
                            b"Content-Length": b"%d" % len(body), b"Connection": b"close",
                            b"Cache-Control": b"no-store", **(extra or {})}.items():
            lines.append(name + b": " + value)
        return b"\r\n".join(lines) + b"\r\n\r\n" + body


def plain_response(status: int, text: str, headers: WebHeaders | None = None) -> bytes:
    return (headers or WebHeaders()).plain(status, text)


def close_after(request) -> None:
    """This answer ends the connection (a refusal): said in the response, and done."""
    request.setHeader(b"Connection", b"close")
    request.channel.persistent = False


def text_answer(request, status: int, text: str) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
    request.setHeader(b"Cache-Control", b"no-store")
    return (text + "\n").encode("utf-8")
