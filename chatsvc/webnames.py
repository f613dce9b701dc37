"""
Which names the web port answers to, and which pages may open its socket.

- **Host.** A request must name the relay by a host it is reached by:
  loopback names, this machine's own addresses, and the names given with
  ``--web-host`` or in ``--web-origin``.  Anything else (a DNS-rebinding
  page whose name now points at 127.0.0.1 or an intranet address) gets 421.
- **Origin.** A browser always sends one; it must be exactly
  ``scheme://host[:port]`` -- one of ``--web-origin``, or, without that
  list, the page's own: the request's Host with the scheme of the
  connection (``https`` over TLS, else ``http``; from a trusted reverse
  proxy, the scheme it forwards in X-Forwarded-Proto, either if it says none).  A path, a
  user, ``null`` or two Origin headers are refused.  No Origin at all means
  no browser (a script, a terminal tool): no more than a TCP client.

Plain Python, no Twisted; ``webpage.py`` and ``webdoor.py`` ask.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from chatsvc import netinfo

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def split_host(value: str | bytes | None) -> tuple[str, int | None] | None:
    """``host[:port]`` (a Host header, an origin's netloc) -> (host lowercased, port), or None if malformed."""
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    value = value.strip().lower()
    if not value or any(ch in value for ch in "/@?# \t"):
        return None
    try:
        parts = urlsplit("//" + value)
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname
    if not host:
        return None
    return host, port


def parse_origin(value: str) -> tuple[str, str, int] | None:
    """``scheme://host[:port]`` exactly -> (scheme, host, port with defaults filled), or None."""
    value = value.strip().lower()
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or parts.username or parts.password:
        return None
    if parts.path or parts.query or parts.fragment or value.endswith("#") or value.endswith("?"):
        return None
    return parts.scheme, parts.hostname, port or _DEFAULT_PORTS[parts.scheme]


class WebNames:
    """
    @param hosts: names given with ``--web-host``.
    @param origins: ``--web-origin``, already checked (``scheme://host[:port]``).
    @param proxies: reverse proxies' addresses (``--web-proxy``).
    @param secure: the web port speaks TLS.
    """

    def __init__(self, hosts=frozenset(), origins=frozenset(), proxies=frozenset(), secure: bool = False,
                 addresses: list[str] | None = None) -> None:
        self.origins = frozenset(o for o in (parse_origin(x) for x in origins) if o is not None)
        own = netinfo.local_addresses() + netinfo.host_names() if addresses is None else addresses
        self.hosts = frozenset(LOOPBACK_NAMES | {h.strip().lower() for h in hosts} | {h.lower() for h in own}
                               | {host for _, host, _ in self.origins})
        self.proxies = frozenset(proxies)
        self.secure = secure

    def host_allowed(self, header: bytes | str | None) -> bool:
        parsed = split_host(header)
        return parsed is not None and parsed[0] in self.hosts

    def misdirected(self, header: bytes | None) -> str:
        shown = (header or b"").decode("ascii", "replace")[:100] or "no Host header"
        return (f"this relay is not served as {shown!r}; its operator can add the name "
                "with --web-host NAME (or --web-origin https://NAME)")

    def origin_allowed(self, origin: str, host_header: bytes | str | None, peer_host: str | None,
                       forwarded_proto: str | None = None) -> bool:
        """Whether a browser page at ``origin`` may open the socket of a request with this Host."""
        parsed = parse_origin(origin)
        if parsed is None:
            return False
        if self.origins:
            return parsed in self.origins
        host = split_host(host_header)
        if host is None:
            return False
        schemes = ["https" if self.secure else "http"]
        if peer_host in self.proxies:
            # the proxy terminates TLS or not, and says so (X-Forwarded-Proto) if it is a careful one
            schemes = [forwarded_proto.strip().lower()] if forwarded_proto else ["https", "http"]
        return any(parsed == (scheme, host[0], host[1] or _DEFAULT_PORTS.get(scheme)) for scheme in schemes)
