"""
Linked relays in this process, on the real reactor, against the session's
real redis-server: connections over StringTransport, the link over real
TCP.  Here what needs the link's insides: snapshots (taken every few
entries for the test), trimming the log, and a relay that joins late and
starts from the snapshot.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from chatsvc import redislink
from chatsvc.cluster import Replica, new_relay
from chatsvc.hub import Limits
from chatsvc.redislink import ClusterLink
from chatsvc.tcpdoor import ChatFactory
from tests.redis_support import REDIS_SERVER
from tests.support import without_ids

pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")


class Watched(StringTransport):
    """A transport that wakes whoever waits for a line to arrive."""

    def __init__(self, peer) -> None:
        super().__init__(peerAddress=peer)
        self.waiting: list[tuple[object, defer.Deferred]] = []  # (predicate on seen, woken)
        self.seen: list[str] = []

    def write(self, data: bytes) -> None:
        super().write(data)
        text = self.value().decode()
        lines = text.split("\n")
        self.clear()
        if lines[-1]:
            self.io.write(lines[-1].encode())  # a partial line: keep it
        for line in lines[:-1]:
            self.seen.append(without_ids(line))
        for entry in list(self.waiting):
            done, d = entry
            if done(self.seen):
                self.waiting.remove(entry)
                # in a turn of its own, as over a socket: not in the middle
                # of the relay's loop that wrote the line
                reactor.callLater(0, d.callback, None)

    def until(self, done) -> defer.Deferred:
        """Fires once ``done(lines seen)`` is true."""
        if done(self.seen):
            return defer.succeed(None)
        d = defer.Deferred()
        self.waiting.append((done, d))
        return d.addTimeout(10, reactor)


class Client:
    def __init__(self, factory: ChatFactory, host: str) -> None:
        self.transport = Watched(IPv4Address("TCP", host, 5000))
        self.door = factory.buildProtocol(None)
        self.door.makeConnection(self.transport)

    def send(self, text: str) -> None:
        self.door.dataReceived(text.encode())

    def seen(self, wanted: str, times: int = 1) -> defer.Deferred:
        return self.transport.until(lambda lines: sum(wanted in line for line in lines) >= times)


@pytest.fixture
def relays(redis_db):
    started: list[ClusterLink] = []

    def start(name: str, snapshot_every: int = redislink.SNAPSHOT_EVERY) -> ChatFactory:
        relay = new_relay(1000, 65536, 250, False, False)
        factory = ChatFactory(relay, Limits(), clock=reactor)
        link = ClusterLink(redis_db, Replica(name, relay), factory.hub, reactor, snapshot_every=snapshot_every)
        link.startService()
        started.append(link)
        return factory

    yield start
    for link in started:
        pytest_twisted.blockon(link.stopService())


@pytest_twisted.ensureDeferred
async def test_a_relay_that_joins_late_starts_from_a_snapshot_and_the_log_is_trimmed(relays, redis_server):
    a = relays("aaaa", snapshot_every=10)
    alice = Client(a, "10.0.0.1")
    alice.send("NICK alice\nJOIN #snap\n")
    await alice.seen("ENDNAMES #snap")
    for round in range(3):  # three snapshots: the third trims the log before the second
        for i in range(15 * round, 15 * round + 15):
            alice.send(f"MSG #snap m{i}\n")
        await alice.seen("OK MSG #snap", times=15 * round + 15)
        assert a.hub.cluster.snapshotting is not None
        await a.hub.cluster.snapshotting
    # snapshots were taken and the log before the previous one trimmed
    db = int(a.hub.cluster.url_args["dbid"])
    at = _in_db(redis_server, db, "GET", redislink.SNAPSHOT_AT)
    assert at is not None and at != "0-0"
    assert _in_db(redis_server, db, "XLEN", redislink.LOG) < 47  # NICK, JOIN, 45 messages
    # a relay started now loads the snapshot, then the rest of the log
    b = relays("bbbb")
    bob = Client(b, "10.0.0.2")
    bob.send("NICK bob\nJOIN #snap\nHISTORY #snap last 100\n")
    await bob.seen("ENDHISTORY #snap")
    history = [line.rsplit(" ", 1)[1] for line in bob.transport.seen if " MSG alice #snap " in line]
    assert history == [f"m{i}" for i in range(45)]
    await alice.seen("JOIN #snap bob")
    assert b.hub.cluster.replica.snapshot() == a.hub.cluster.replica.snapshot()


@pytest_twisted.ensureDeferred
async def test_a_relay_that_fell_behind_the_trimmed_log_notices_and_reloads(relays):
    a, b = relays("aaaa", snapshot_every=5), relays("bbbb", snapshot_every=5)
    alice, bob = Client(a, "10.0.0.1"), Client(b, "10.0.0.2")
    alice.send("NICK alice\nJOIN #lag\n")
    await alice.seen("ENDNAMES #lag")
    bob.send("NICK bob\nJOIN #lag\n")
    await alice.seen("JOIN #lag bob")
    lagging = b.hub.cluster
    early = None
    for round in range(3):
        for i in range(6 * round, 6 * round + 6):
            alice.send(f"MSG #lag m{i}\n")
        await bob.seen(" #lag m", times=6 * round + 6)
        for relay in (a, b):
            if relay.hub.cluster.snapshotting is not None:
                await relay.hub.cluster.snapshotting
        if early is None:
            early = lagging.replica.snapshot(), lagging.position
    # As if b had stopped reading after the first round and the others had
    # trimmed the log past it since: it must notice the gap, load the
    # latest snapshot and carry on -- not skip what it never saw.
    lagging.replica.restore(early[0])
    lagging.position = early[1]
    alice.send("MSG #lag after\n")
    await bob.seen("MSG alice #lag after")
    assert lagging.up and b.hub.cluster.replica.snapshot() == a.hub.cluster.replica.snapshot()


def _in_db(server, db: int, *command: str):
    """A command in one database (the helper's connections start in db 0)."""
    import socket

    from tests.redis_support import _read_reply, _request

    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as s:
        reader = s.makefile("rb")
        s.sendall(_request("AUTH", server.password) + _request("SELECT", str(db)) + _request(*command))
        _read_reply(reader), _read_reply(reader)
        return _read_reply(reader)


def test_while_redis_is_away_changes_wait_in_a_bounded_queue_then_are_refused():
    from twisted.internet.task import Clock

    relay = new_relay(1000, 65536, 250, False, False)
    clock = Clock()
    factory = ChatFactory(relay, Limits(), clock=clock)
    link = ClusterLink("redis://127.0.0.1:1", Replica("aaaa", relay), factory.hub, clock, max_queued=2)
    link.synced = True  # it had the cluster's state; Redis is away now (nothing started)
    alice = Client(factory, "10.0.0.1")
    alice.send("NICK alice\nJOIN #q\n@cid=k1 MSG #q hello\nPING x\n")
    assert alice.transport.seen == [
        "HELLO chatsvc 1 chatsvc relay aaaa, linked; message bodies stay end-to-end encrypted; "
        "the link to the other relays is down: what you send waits until it is back",
        "@cid=k1 ERROR store-failed the relays' shared store (Redis) is unreachable and too much is waiting "
        "for it; try again later",
    ]  # the PONG waits behind the NICK and JOIN, which wait for Redis
    assert [entry.split(",")[4] for entry in link.queue] == ['"N"', '"J"']
    assert alice.transport.producerState == "paused"  # no more reading while lines wait
