"""
This machine's non-loopback IP addresses, so the server can tell its users
what to type into their clients (the original server printed its IP).

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
