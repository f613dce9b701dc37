"""
Addresses: this machine's non-loopback IP addresses, so the server can tell
its users what to type into their clients (the original server printed its
IP) and the web port knows the names it is reached by; and the unit the
per-address limits count (``origin_of``).

Best effort and local only: nothing here sends a packet.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import sys


def _linux_ipv4_addresses() -> list[str]:
    # SIOCGIFADDR on every interface: the stdlib has no portable way to list
    # interface addresses, and this one needs no extra dependency.
    import fcntl

    SIOCGIFADDR = 0x8915
    found = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            request = struct.pack("256s", name.encode()[:15])
            try:
                reply = fcntl.ioctl(s.fileno(), SIOCGIFADDR, request)
            except OSError:
                continue  # interface without an IPv4 address
            found.append(socket.inet_ntoa(reply[20:24]))
    return found


def _resolver_addresses() -> list[str]:
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, proto=socket.IPPROTO_TCP)
    except OSError:
        return []
    return [info[4][0] for info in infos]


def local_addresses() -> list[str]:
    """Non-loopback, non-link-local addresses of this host, IPv4 first."""
    candidates: list[str] = []
    if sys.platform.startswith("linux"):
        try:
            candidates += _linux_ipv4_addresses()
        except OSError:
            pass
    candidates += _resolver_addresses()
    result: list[str] = []
    for text in candidates:
        try:
            ip = ipaddress.ip_address(text.split("%")[0])
        except ValueError:
            continue
        if ip.is_loopback or ip.is_link_local or ip.is_unspecified:
            continue
        if str(ip) not in result:
            result.append(str(ip))
    return sorted(result, key=lambda a: (":" in a, a))


def host_names() -> list[str]:
    """This machine's own names (``myhost``, ``myhost.example.lan``), lowercased."""
    names = []
    for name in (socket.gethostname(), socket.getfqdn()):
        if name and name.lower() not in names and name.lower() != "localhost":
            names.append(name.lower())
    return names


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
