"""
Bulk streams: two connections that named the same token are spliced, byte
for byte, and the relay steps out of the way.

A client opens a second connection to the relay for each file transfer
and, instead of ``NICK``, says ``STREAM <token> send`` (or ``recv``).  The
first of a pair waits until its partner comes, or is dropped after
``PAIR_TIMEOUT``; it is still read meanwhile, so a waiting end that closes
frees its descriptor and its place at once -- what it sends before its
partner comes is held, up to ``HOLD_BYTES`` (then reading pauses).  Then
each side's bytes go straight to the other's transport, and each
transport is the other's producer: a receiver that reads slowly stops the
relay reading from its sender, so TCP backpressure runs end to end and the
relay holds a socket buffer or two per stream, never the file.  A token
is good for one pair, once.  The relay sees only ciphertext frames
(docs/encryption.md, *Files over streams*) and logs sizes and durations.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING

from twisted.logger import Logger

from chatsvc import grammar
from chatsvc.doors import HOLD_BYTES  # noqa: F401 -- the waiting end's allowance, defined with the doors

if TYPE_CHECKING:
    from chatsvc.core import Connection

#: How long the first of a pair waits for its partner.
PAIR_TIMEOUT = 60.0
#: Streams open at once from one origin (an address, an IPv6 /64).
MAX_STREAMS_PER_ORIGIN = 16
#: Tokens remembered as used (so none pairs twice), the oldest forgotten.
USED_MEMORY = 100_000

ROLES = ("send", "recv")


class StreamPairing:
    """The tokens waiting for a partner, and the pairs spliced."""

    log = Logger()

    def __init__(self, clock) -> None:
        self.clock = clock
        self.waiting: dict[str, tuple[str, "Connection", object]] = {}  # token -> (role, conn, timer)
        self.used: dict[str, None] = {}  # tokens that paired (oldest first)
        self.per_origin: Counter[str] = Counter()

    def check(self, conn: "Connection", token: str, role: str, counted: bool = True) -> str | None:
        """Why a connection cannot be a stream end (``code text``), or None if it can."""
        if role not in ROLES or not grammar.is_valid_stream_token(token):
            return "stream-invalid STREAM <token> send|recv, the token 22-64 base64url characters"
        if token in self.used:
            return "stream-used that stream token was used already"
        origin = conn.origin if counted else None
        if origin and self.per_origin[origin] >= MAX_STREAMS_PER_ORIGIN:
            return f"too-many-streams at most {MAX_STREAMS_PER_ORIGIN} streams at once per address"
        partner = self.waiting.get(token)
        if partner is not None and partner[0] == role:
            return f"stream-taken a {role} end for that token is waiting already"
        return None

    def offer(self, conn: "Connection", token: str, role: str, counted: bool = True) -> str | None:
        """
        A connection asks to be one end of a stream.  Returns None (it waits
        or is spliced now) or an error code and text, ``code text``.
        ``counted``: False for an end counted already (one that waited for
        the cluster's answer first, ``streamlink.py``).
        """
        refusal = self.check(conn, token, role, counted)
        if refusal is not None:
            return refusal
        if counted:
            self.count(conn)
        partner = self.waiting.get(token)
        if partner is None:
            timer = self.clock.callLater(PAIR_TIMEOUT, self._expire, token)
            self.waiting[token] = (role, conn, timer)
            return None
        _, other, timer = self.waiting.pop(token)
        if timer.active():
            timer.cancel()
        self.used[token] = None
        while len(self.used) > USED_MEMORY:
            del self.used[next(iter(self.used))]
        sender, receiver = (conn, other) if role == "send" else (other, conn)
        self.log.info("stream from {a} to {b} paired", a=sender.door.peer, b=receiver.door.peer)
        splice(conn.door, other.door)
        return None

    def count(self, conn: "Connection") -> None:
        """A stream end counts against its address's limit until it ends."""
        origin = conn.origin
        if origin:
            self.per_origin[origin] += 1
        conn.stream_origin = origin

    def _expire(self, token: str) -> None:
        entry = self.waiting.pop(token, None)
        if entry is not None:
            entry[1].close("stream-timeout", f"no partner within {PAIR_TIMEOUT:g} seconds; closing", "stream timeout")

    def ended(self, conn: "Connection") -> None:
        """A stream connection is gone (paired or not)."""
        for token, (_, waiting, timer) in list(self.waiting.items()):
            if waiting is conn:
                del self.waiting[token]
                if timer.active():
                    timer.cancel()
        origin = getattr(conn, "stream_origin", None)
        if origin:
            self.per_origin[origin] -= 1
            if self.per_origin[origin] <= 0:
                del self.per_origin[origin]


def splice(one, other) -> None:
    """
    Join two stream ends, whatever their doors (TCP, TLS, WebSocket, a link
    port): each one's bytes go to the other (``raw_write``), and each one's
    transport is the other's producer -- a receiver that reads slowly stops
    the relay reading from its sender, backpressure end to end.
    """
    for a in (one, other):
        a.fast_path(False)
        a.transport.unregisterProducer()  # it was the door's; now the partner's
    for a, b in ((one, other), (other, one)):
        b.transport.registerProducer(a.transport, True)
    for a, b in ((one, other), (other, one)):
        held = a.stream.joined(b)
        if held:
            b.raw_write(held)
        a.transport.resumeProducing()


def unsplice(end) -> None:
    """One end of a stream is gone: say so, and close its partner once what is queued for it went out."""
    stream = end.stream
    partner = stream.leave()
    if partner is not None:
        _log.info("stream from {peer} ended: {size} bytes in {seconds:.1f} s",
                  peer=end.peer, size=stream.bytes, seconds=time.monotonic() - stream.since)
        partner.end_stream()


_log = Logger(namespace="chatsvc.streams")
