"""
The order a connection's lines take effect in.

On a relay of its own (L{LocalOrdering}) a line takes effect as it is
handled.  On linked relays (L{LogOrdering}, ``cluster.py``) a command that
changes the chat goes into the shared log and takes effect when the log
comes back; a line that depends on what is in flight -- a PONG after a
MSG, anything while the link is not ready -- waits for it, so answers keep
their order.  Commands that go into the log need not wait for each other:
the log keeps their order and applies them as one relay would.  The
connection core asks one question, ``hold``, whichever it has.
"""

from __future__ import annotations

from collections import deque


class LocalOrdering:
    """One relay: nothing waits."""

    in_log = False
    waiting = False

    def hold(self, text: str, line) -> bool:
        return False

    def replicated(self, line) -> bool:
        return False

    def in_flight(self) -> bool:
        return False

    def forget(self) -> None:
        pass


class LogOrdering:
    """Linked relays: lines that depend on this connection's entries in the log wait for them."""

    def __init__(self, conn, cluster) -> None:
        self.conn = conn
        self.cluster = cluster
        self.inflight = 0  # entries appended, not yet applied
        self.held: deque | None = None  # lines waiting for them
        self.in_log = False  # the log knows of this connection (its QUIT must go there)

    @property
    def waiting(self) -> bool:
        return self.held is not None

    def replicated(self, line) -> bool:
        return self.cluster.replicates(line)

    def in_flight(self) -> bool:
        return bool(self.inflight)

    def hold(self, text: str, line) -> bool:
        """Whether this line must wait (it is kept, in order, and handled by L{release})."""
        if self.held is not None:
            self.held.append(text)
            return True
        if self.cluster.ready and not (self.inflight and not self.cluster.replicates(line)):
            return False
        self.held = deque([text])
        self.conn.update_reading()
        return True

    def submitted(self) -> None:
        self.inflight += 1
        self.in_log = True

    def left(self) -> bool:
        """The connection is gone: whether the log must hear of its QUIT."""
        known, self.in_log = self.in_log, False
        return known

    def applied(self) -> None:
        """One of this connection's log entries took effect (or was refused, and it was told)."""
        self.inflight -= 1
        self.release()

    def release(self) -> None:
        """Handle the lines that waited, until one must wait again."""
        conn = self.conn
        if self.held is None or self.inflight or conn.door.closing or not self.cluster.ready:
            return
        held, self.held = self.held, None
        while held:
            if conn.door.closing:
                return
            conn.handle_text(held.popleft())
            if self.held is not None:
                self.held.extend(held)
                return
        conn.update_reading()

    def forget(self) -> None:
        self.held = None
