"""
The flood limit of one connection: a token bucket over the lines it sends.
Lines over the limit wait here, in order, and the door is asked to stop
reading until the bucket has a token again -- nothing is dropped, the
sender is only slowed down.  A command whose answer is far bigger than the
line that asked (``ROOMS``, a ``NICK`` change seen by many) is charged for
it.
"""

from __future__ import annotations

from collections import deque

from chatsvc.ratelimit import TokenBucket

# Commands whose output can be far larger than the line that asked for it
# are charged to the sender's flood budget: one line per this many lines
# they make the server send.
OUTPUT_LINES_PER_TOKEN = 10


class FloodGate:
    """
    @param conn: the connection: its ``line_received``, ``line_too_long``,
        ``door`` (closing), ``update_reading`` and ``log``.
    """

    __slots__ = ("conn", "clock", "bucket", "pending", "throttled", "_resume_call", "_warned")

    def __init__(self, conn, clock, burst: int, rate: float) -> None:
        self.conn = conn
        self.clock = clock
        self.bucket = TokenBucket(burst, rate, clock.seconds()) if burst and rate else None
        self.pending: deque | None = None  # lines held back by the limit
        self.throttled = False
        self._resume_call = None
        self._warned = False

    def lines(self, lines: list[bytes | None]) -> None:
        """Lines a door framed, in order (None: a line over the length limit)."""
        if self.pending is None:
            self._handle(lines)
        else:
            self.pending.extend(lines)
            self._drain()

    def _handle(self, lines: list[bytes | None]) -> None:
        """Handle what the limit allows now; keep the rest for later."""
        conn = self.conn
        granted = len(lines) if self.bucket is None else self.bucket.take(len(lines), self.clock.seconds())
        for i in range(granted):
            if conn.door.closing:
                return
            if lines[i] is None:
                conn.line_too_long()
                return
            conn.line_received(lines[i])
        if granted < len(lines) and not conn.door.closing:
            self.pending = deque(lines[granted:])
            self._throttle()

    def _drain(self) -> None:
        conn, pending = self.conn, self.pending
        granted = self.bucket.take(len(pending), self.clock.seconds())
        for _ in range(granted):
            if conn.door.closing:
                return
            line = pending.popleft()
            if line is None:
                conn.line_too_long()
                return
            conn.line_received(line)
        if pending:
            if not conn.door.closing:
                self._throttle()
            return
        self.pending = None
        if self.throttled:
            self.throttled = False
            conn.update_reading()

    def _throttle(self) -> None:
        # Over the flood limit: stop reading, come back when the bucket has a token again.
        conn = self.conn
        if not self._warned:
            self._warned = True
            conn.log.info("{peer} sends faster than {rate:g} lines/s; slowing it down",
                          peer=conn.door.peer, rate=conn.limits.flood_rate)
        if not self.throttled:
            self.throttled = True
            conn.update_reading()
        if self._resume_call is None or not self._resume_call.active():
            self._resume_call = self.clock.callLater(self.bucket.wait_time(self.clock.seconds()), self._unthrottle)

    def _unthrottle(self) -> None:
        self._resume_call = None
        if self.pending is not None:
            self._drain()

    def charge(self, lines_sent: int) -> None:
        """A command made the server send many lines: it costs flood budget."""
        if self.bucket is not None and lines_sent > OUTPUT_LINES_PER_TOKEN:
            self.bucket.charge(lines_sent // OUTPUT_LINES_PER_TOKEN, self.clock.seconds())

    def stop(self) -> None:
        if self._resume_call is not None and self._resume_call.active():
            self._resume_call.cancel()
        self.pending = None
