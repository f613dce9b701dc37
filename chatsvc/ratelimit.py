"""
A token bucket: the flood limit for one connection.

Plain arithmetic on times passed in by the caller (no clock of its own, no
Twisted), so it is exact to test.
"""

from __future__ import annotations


class TokenBucket:
    """
    Up to ``burst`` lines at once, refilled at ``rate`` lines per second.

    @param now: the current time, in seconds, when the bucket is made (full).
    """

    __slots__ = ("burst", "rate", "tokens", "stamp")

    def __init__(self, burst: int, rate: float, now: float) -> None:
        if burst < 1 or rate <= 0:
            raise ValueError("burst must be >= 1 and rate > 0")
        self.burst = burst
        self.rate = rate
        self.tokens = float(burst)
        self.stamp = now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def take(self, wanted: int, now: float) -> int:
        """Take up to ``wanted`` tokens; returns how many were granted."""
        self._refill(now)
        granted = max(0, min(wanted, int(self.tokens)))
        self.tokens -= granted
        return granted

    def charge(self, tokens: float, now: float) -> None:
        """
        Take tokens for work beyond one line (a command whose answer is
        big).  The bucket may go below zero -- the sender then waits until
        it has refilled -- but not below a minute's worth of refill.
        """
        self._refill(now)
        self.tokens = max(self.tokens - tokens, -60 * self.rate)

    def wait_time(self, now: float) -> float:
        """Seconds until the next whole token is available (0 if one is)."""
        self._refill(now)
        if self.tokens >= 1:
            return 0.0
        return (1 - self.tokens) / self.rate
