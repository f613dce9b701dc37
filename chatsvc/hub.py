"""
What every connection of one relay shares, whatever door it came through:
admission (connections in all and per address), the output budget of all
clients together, the timeout sweep, the large-room announcer and graceful
shutdown.  Front doors hand each new connection's core to L{Hub.admit} and
report output they had to queue through L{Hub.queued}.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from twisted.internet import defer, task
from twisted.logger import Logger

from chatsvc import grammar
from chatsvc.netinfo import origin_of  # noqa: F401 -- where the limits' unit is defined
from chatsvc.relay import Relay
from chatsvc.streams import StreamPairing

if TYPE_CHECKING:
    from chatsvc.core import Connection

# Timeouts are checked this often (seconds), for all connections at once.
SWEEP_INTERVAL = 1.0

# When the server is full, a connection that has not registered after this
# long makes room for a newcomer (a real client registers in milliseconds).
UNREGISTERED_GRACE = 5.0


@dataclass(frozen=True)
class Limits:
    """Per-connection and per-server limits; 0 turns a limit off."""

    max_line: int = grammar.DEFAULT_MAX_LINE
    max_sendq: int = 1024 * 1024
    flood_burst: int = 50
    flood_rate: float = 20.0
    max_clients: int = 10_000
    max_per_ip: int = 100
    #: All clients' queued output together (bytes); past it, the client with
    #: the most queued is cut off.  Without it, max_clients x max_sendq
    #: (10 GiB by default) would be the only bound.
    max_total_sendq: int = 256 * 1024 * 1024
    register_timeout: float = 30.0
    idle_timeout: float = 120.0
    ping_timeout: float = 60.0
    shutdown_grace: float = 3.0
    #: A connection the relay closes (a timeout, a broken rule) gets this
    #: long to go away politely; then it is aborted -- a peer that never
    #: reads would otherwise keep its socket and its place for ever.
    close_grace: float = 10.0


class Hub:
    """The connections of one relay, and the limits they share."""

    log = Logger()

    def __init__(self, relay: Relay, limits: Limits | None = None, clock=None) -> None:
        if clock is None:
            from twisted.internet import reactor as clock
        self.relay = relay
        self.limits = limits or Limits(max_line=relay.max_line)
        self.clock = clock
        self.connections: set[Connection] = set()
        self.per_host: Counter[str] = Counter()  # by origin (address or /64)
        self.unregistered: dict[Connection, None] = {}  # oldest first
        self.total_queued = 0  # output queued behind full transports, all clients
        self._queuing: dict[Connection, int] = {}  # connection -> bytes it has queued
        self._cut: set[Connection] = set()  # being cut off: no longer counted
        self._announcer: task.LoopingCall | None = None
        self._sweeper: task.LoopingCall | None = None
        self.streams = StreamPairing(self.clock)
        #: the link to other relays (redislink.py), when linked
        self.cluster = None
        #: where the page is served, for CAPS: an origin (--web-origin), or scheme:port (set once the web port listens)
        self.page: str | None = None

    # --- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        if self.relay.large_room and self._announcer is None:
            self._announcer = task.LoopingCall(self.relay.announce_counts)
            self._announcer.clock = self.clock
            self._announcer.start(grammar.MEMBERS_INTERVAL, now=False)

    def stop(self) -> None:
        if self._announcer is not None and self._announcer.running:
            self._announcer.stop()
        self._announcer = None

    def capabilities(self) -> list[str]:
        """What CAPS announces (docs/protocol.md, *Capabilities*)."""
        caps = [grammar.CAP_JOIN_PROOF, grammar.CAP_STREAMS, grammar.CAP_TOPIC, f"max-line={self.limits.max_line}"]
        if self.relay.salt:
            caps.append(f"salt={self.relay.salt}")
        if self.page:
            caps.append(f"page={self.page}")
        return caps

    # --- admission -------------------------------------------------------------------

    def admit(self, conn: "Connection") -> tuple[str, str] | None:
        """Count a new connection in, or say why it is refused."""
        limits = self.limits
        # Linked relays: the limits hold for the whole chat, counting the
        # members connected to the others too.
        replica = self.cluster.replica if self.cluster is not None else None
        elsewhere = replica.remote_total if replica is not None else 0
        if limits.max_clients and len(self.connections) + elsewhere >= limits.max_clients and not self._make_room():
            return "server-full", f"the server is full ({limits.max_clients} connections); try later"
        origin = conn.origin
        if replica is not None and origin:
            elsewhere = replica.remote_per_origin.get(origin, 0)
        else:
            elsewhere = 0
        if origin and limits.max_per_ip and self.per_host[origin] + elsewhere >= limits.max_per_ip:
            return "too-many-connections", f"at most {limits.max_per_ip} connections per address"
        self.connections.add(conn)
        self.unregistered[conn] = None
        if origin:
            self.per_host[origin] += 1
        if self._sweeper is None and (limits.register_timeout or limits.idle_timeout):
            self._sweeper = task.LoopingCall(self._sweep)
            self._sweeper.clock = self.clock
            self._sweeper.start(SWEEP_INTERVAL, now=False)
        return None

    def _make_room(self) -> bool:
        """
        Full: drop the oldest connection that has sat without a nick past
        UNREGISTERED_GRACE, if there is one.  Silent sockets then cannot
        lock people out; a flood of them only churns.
        """
        oldest = next(iter(self.unregistered), None)
        if oldest is None or self.clock.seconds() - oldest.connected_at < UNREGISTERED_GRACE:
            return False
        self.log.info("server full: dropping {peer}, which never registered", peer=oldest.door.peer)
        oldest.close("registration-timeout", "the server is full and you have not sent NICK; closing",
                     "registration timeout", abort=True)
        self.release(oldest)  # now, not when the abort completes
        return True

    def registered(self, conn: "Connection") -> None:
        self.unregistered.pop(conn, None)

    def release(self, conn: "Connection") -> None:
        if conn not in self.connections:
            return
        self.connections.discard(conn)
        self.unregistered.pop(conn, None)
        self._cut.discard(conn)
        self.total_queued -= self._queuing.pop(conn, 0)
        origin = conn.origin
        if origin:
            self.per_host[origin] -= 1
            if self.per_host[origin] <= 0:
                del self.per_host[origin]
        if not self.connections and self._sweeper is not None:
            self._sweeper.stop()  # nothing to watch: no timer at all
            self._sweeper = None

    # --- output in all -------------------------------------------------------------------

    def queued(self, conn: "Connection", now_queued: int) -> None:
        """
        A door reports how much output it holds for a client that is not
        reading.  Past the global budget, the client with the most queued
        is cut off -- the one costing the most, whoever made the server
        write to it.
        """
        if conn not in self.connections or conn in self._cut:
            return
        before = self._queuing.pop(conn, 0)
        if now_queued > 0:
            self._queuing[conn] = now_queued
        self.total_queued += now_queued - before
        budget = self.limits.max_total_sendq
        while budget and self.total_queued > budget and self._queuing:
            worst = max(self._queuing, key=self._queuing.__getitem__)
            self.log.warn(
                "output queued for all clients is over {budget} bytes; dropping {peer}, the most behind",
                budget=budget, peer=worst.door.peer,
            )
            self.total_queued -= self._queuing.pop(worst)
            self._cut.add(worst)
            worst.close(
                "sendq-exceeded",
                "the server's output budget is used up and you are the furthest behind; closing",
                "send queue exceeded",
                abort=True,
            )

    # --- time ---------------------------------------------------------------------------------

    def _sweep(self) -> None:
        now = self.clock.seconds()
        for conn in list(self.connections):
            conn.check_timeouts(now)

    # --- shutdown ---------------------------------------------------------------------------

    def close_all(self) -> defer.Deferred:
        """
        Tell every client the server is stopping and close it; connections
        that have not closed after the grace period (peers not reading) are
        aborted, so shutdown never hangs.
        """
        self.relay.closing = True  # no QUIT storm while everyone leaves
        live = list(self.connections)
        if live:
            self.log.info("closing {count} connections", count=len(live))
        for conn in live:
            conn.closed = defer.Deferred()
            conn.close("server-shutdown", "the server is shutting down", "server shutdown")
        waiting = defer.DeferredList([conn.closed for conn in live])

        def abort_stragglers() -> None:
            for conn in list(self.connections):
                conn.door.close(True)

        straggler_call = self.clock.callLater(self.limits.shutdown_grace, abort_stragglers)

        def done(result):
            if straggler_call.active():
                straggler_call.cancel()
            return None

        return waiting.addCallback(done)
