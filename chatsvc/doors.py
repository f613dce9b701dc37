"""
The contract between a front door (TCP and TLS in ``tcpdoor.py``, WebSocket
in ``webdoor.py``, a linked relay's link port in ``streamlink.py``) and the
connection core (``core.py``): L{IDoor}, declared whole, and the two small
objects every door owns and nobody else writes -- its L{SendMeter} (output
queued while the client is behind) and its L{StreamEnd} (when the
connection is one end of a bulk stream, ``streams.py``).
"""

from __future__ import annotations

import time

from zope.interface import Attribute, Interface

# What a transport buffers before it pauses its producer (Twisted's
# FileDescriptor.bufferSize): counted as already queued once paused.
TRANSPORT_BUFFER = 64 * 1024
# The hub hears of a paused client's queue in steps this big, not on every
# line: the global budget is then exact to within this per client.
REPORT_STEP = 16 * 1024
#: What a waiting stream end may send before its partner comes; past it,
#: reading from it pauses (a well-behaved sender waits for its receiver's
#: first bytes, so it sends nothing at all).
HOLD_BYTES = 64 * 1024


class IDoor(Interface):
    """How a connection core reaches its client: everything a front door offers."""

    peer = Attribute("'host:port' (or whatever names the peer), for logs")
    host = Attribute("the peer's IP address, or None (per-address limits)")
    closing = Attribute("True once the door is closing: nothing more goes out")
    stream_only = Attribute("True for a linked relay's link port: STREAM is the only line it takes")
    transport = Attribute("the transport: a stream end's partner registers it as its producer")
    meter = Attribute("its SendMeter")
    stream = Attribute("its StreamEnd")

    def send(data: bytes) -> None:
        """Queue one encoded line (ending in \\n); the door accounts for it."""

    def close(abort: bool) -> None:
        """Close politely (what is queued goes out first), or abort at once."""

    def pause_reading() -> None:
        """Stop delivering lines (the flood limit); TCP then slows the sender."""

    def resume_reading() -> None:
        """Deliver lines again."""

    def fast_path(on: bool) -> None:
        """Let the relay write straight to the transport while the client keeps up (or stop)."""

    def raw_write(data: bytes) -> None:
        """A stream end: the partner's bytes, as they came."""

    def end_stream() -> None:
        """A stream end: the partner is gone; close once what is queued went out."""


class SendMeter:
    """
    A door's output while its client is behind: the transport's buffer is
    full, so what the door writes is queued.  The hub hears of it in
    REPORT_STEP steps (the global output budget), and the client is cut off
    past its own ``max_sendq``.
    """

    __slots__ = ("paused", "queued", "reported")

    def __init__(self) -> None:
        self.paused = False  # the transport's buffer is full
        self.queued = 0  # bytes written since it was
        self.reported = 0  # what the hub was last told of them

    def pause(self) -> None:
        if not self.paused:
            self.paused = True
            self.queued = self.reported = 0

    def resume(self, conn) -> None:
        self.paused = False
        self.queued = 0
        if self.reported and conn is not None:
            self.reported = 0
            conn.hub.queued(conn, 0)

    def take(self, conn, door, size: int) -> bool:
        """``size`` more bytes queued for ``conn``; False when it was cut off and nothing more should go."""
        self.queued += size
        if conn.admitted and self.queued - self.reported >= REPORT_STEP:
            self.reported = self.queued
            conn.hub.queued(conn, self.queued)
            if door.closing:
                return False  # cut off to keep all clients' output within budget
        limit = conn.limits.max_sendq
        if limit and TRANSPORT_BUFFER + self.queued > limit:
            self.paused = False  # only once
            conn.log.warn("{peer} is not reading; dropping it (send queue over {limit} bytes)", peer=door.peer, limit=limit)
            conn.close("sendq-exceeded", f"you are not reading fast enough (over {limit} bytes queued); closing",
                       "send queue exceeded", abort=True)
            return False
        return True


class StreamEnd:
    """A door as one end of a bulk stream: its partner, what came before it, what passed."""

    __slots__ = ("partner", "held", "bytes", "since")

    def __init__(self) -> None:
        self.partner = None  # the other end's door, once spliced
        self.held = b""  # bytes that came before the partner
        self.bytes = 0  # bytes passed on to the partner
        self.since = 0.0

    def hold(self, data: bytes) -> bool:
        """Keep bytes until the partner comes; True once over HOLD_BYTES (pause reading)."""
        self.held += data
        return len(self.held) > HOLD_BYTES

    def pass_on(self, data: bytes) -> None:
        self.bytes += len(data)
        self.partner.raw_write(data)

    def leave(self):
        """The end is gone: its partner, if it had one (now told by the caller)."""
        partner, self.partner = self.partner, None
        return partner

    def joined(self, partner) -> bytes:
        """Spliced with ``partner``: returns what was held for it."""
        self.partner = partner
        self.since = time.monotonic()
        held, self.held = self.held, b""
        self.bytes += len(held)
        return held
