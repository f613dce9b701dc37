"""Level 2/3: per-connection limits over StringTransports and a fake clock."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from chatsvc.ratelimit import TokenBucket
from chatsvc.hub import Limits
from chatsvc.doors import TRANSPORT_BUFFER
from tests.support import FakeClient, make_factory, registered


# --- token bucket (pure) ------------------------------------------------------


def test_bucket_burst_then_rate():
    bucket = TokenBucket(burst=5, rate=2, now=0)
    assert bucket.take(10, now=0) == 5
    assert bucket.take(1, now=0) == 0
    assert bucket.wait_time(now=0) == pytest.approx(0.5)
    assert bucket.take(10, now=1.0) == 2
    assert bucket.take(10, now=100) == 5  # never more than the burst


@pytest.mark.parametrize("burst, rate", [(0, 1), (1, 0), (-1, 5)])
def test_bucket_rejects_nonsense(burst, rate):
    with pytest.raises(ValueError):
        TokenBucket(burst, rate, 0)


# --- slow consumers -----------------------------------------------------------


def test_client_that_stops_reading_is_cut_off_others_unaffected():
    factory = make_factory(limits=Limits(max_sendq=TRANSPORT_BUFFER + 1000))
    slow = registered(factory, "slow", "#a")
    fast = registered(factory, "fast", "#a")
    sender = registered(factory, "sender", "#a")
    slow.lines(), fast.lines()
    slow.protocol.pauseProducing()  # what a TCP transport does when its buffer fills
    for n in range(20):
        slow.protocol.pauseProducing()  # transports repeat it on every write while full
        sender.send(f"MSG #a {n:03d}" + "x" * 90 + "\n")
    assert slow.transport.disconnected  # aborted, not politely closed
    assert slow.lines()[-1].startswith("ERROR sendq-exceeded ")
    assert len(fast.lines()) == 20
    slow.drop()
    assert fast.lines() == ["QUIT slow send queue exceeded"]
    assert "slow" not in factory.relay.fanout.nicks


def test_resumed_client_starts_counting_afresh():
    factory = make_factory(limits=Limits(max_sendq=TRANSPORT_BUFFER + 1000))
    reader = registered(factory, "reader", "#a")
    sender = registered(factory, "sender", "#a")
    for _ in range(5):
        reader.protocol.pauseProducing()
        for n in range(8):
            sender.send("MSG #a " + "y" * 100 + "\n")
        reader.protocol.resumeProducing()  # its buffer drained
    assert not reader.closed


def test_output_pause_does_not_stop_reading():
    # A TLS transport pauses its producer until the handshake is done; if
    # that stopped reading too, the handshake could never finish.
    factory = make_factory()
    c = FakeClient(factory)
    c.protocol.pauseProducing()
    assert c.transport.producerState == "producing"
    c.send("PING through\n")
    assert c.lines()[-1] == "PONG through"


def test_sendq_limit_zero_is_off():
    factory = make_factory(limits=Limits(max_sendq=0))
    reader = registered(factory, "reader", "#a")
    sender = registered(factory, "sender", "#a")
    reader.protocol.pauseProducing()
    sender.send("".join("MSG #a " + "z" * 1000 + "\n" for _ in range(50)))
    assert not reader.closed


# --- floods -------------------------------------------------------------------


def test_flood_is_slowed_never_dropped_or_disconnected():
    clock = Clock()
    factory = make_factory(clock=clock, limits=Limits(flood_burst=10, flood_rate=5))
    flooder = registered(factory, "flooder", "#a")
    listener = registered(factory, "listener", "#a")
    flooder.lines()
    flooder.send("".join(f"MSG #a {n}\n" for n in range(40)))
    assert len(listener.lines()) == 10 - 2  # the burst, less the NICK and JOIN
    assert flooder.transport.producerState == "paused"  # TCP backpressure
    got = []
    for _ in range(10):
        clock.advance(1)
        got += listener.lines()
    got = [line for line in got]
    assert len(got) == 32
    assert not flooder.closed
    assert flooder.transport.producerState == "producing"
    everything = [f"MSG flooder #a {n}" for n in range(40)]
    assert got == everything[8:]


def test_flood_keeps_order_with_further_data():
    clock = Clock()
    factory = make_factory(clock=clock, limits=Limits(flood_burst=2, flood_rate=1))
    c = FakeClient(factory)
    c.lines()
    c.send("PING 1\nPING 2\nPING 3\n")
    c.send("PING 4\n")  # arrives although reading is paused (a read in flight)
    assert c.lines() == ["PONG 1", "PONG 2"]
    clock.advance(1)
    assert c.lines() == ["PONG 3"]
    clock.advance(5)
    assert c.lines() == ["PONG 4"]


def test_flood_limit_off():
    factory = make_factory(limits=Limits(flood_burst=0, flood_rate=0))
    c = registered(factory, "c", "#a")
    c.send("".join(f"PING {n}\n" for n in range(500)))
    assert len(c.lines()) == 500


def test_overlong_line_after_throttled_lines_still_refused_in_order():
    clock = Clock()
    factory = make_factory(clock=clock, limits=Limits(max_line=50, flood_burst=1, flood_rate=1))
    c = FakeClient(factory)
    c.lines()
    c.send("PING a\nPING b\n" + "x" * 100)
    assert c.lines() == ["PONG a"]
    clock.advance(1)
    clock.advance(1)
    lines = c.lines()
    assert lines[0] == "PONG b"
    assert lines[1].startswith("ERROR line-too-long ")
    assert c.closed


# --- connection limits ----------------------------------------------------------


def test_server_full():
    factory = make_factory(limits=Limits(max_clients=2))
    a = FakeClient(factory, host="10.0.0.1")
    FakeClient(factory, host="10.0.0.2")
    c = FakeClient(factory, host="10.0.0.3")
    assert c.lines()[0].startswith("ERROR server-full ")
    assert c.closed
    c.drop()  # a refused connection leaves no trace
    assert len(factory.hub.connections) == 2
    a.drop()
    d = FakeClient(factory, host="10.0.0.4")
    assert d.lines()[0].startswith("HELLO ")


def test_too_many_connections_from_one_address():
    factory = make_factory(limits=Limits(max_per_ip=2))
    first = [FakeClient(factory, host="10.9.9.9") for _ in range(2)]
    third = FakeClient(factory, host="10.9.9.9")
    assert third.lines()[0].startswith("ERROR too-many-connections ")
    assert third.closed
    other = FakeClient(factory, host="10.1.1.1")
    assert other.lines()[0].startswith("HELLO ")
    first[0].drop()
    assert FakeClient(factory, host="10.9.9.9").lines()[0].startswith("HELLO ")
    for c in first[1:]:
        c.drop()
    assert factory.hub.per_host["10.9.9.9"] == 1


# --- timeouts ------------------------------------------------------------------


def test_unregistered_connection_closed_after_register_timeout():
    clock = Clock()
    factory = make_factory(clock=clock)
    c = FakeClient(factory)
    c.lines()
    c.send("PING keepalive\n")  # activity is not registration
    clock.advance(29)
    assert not c.closed
    clock.advance(1)
    assert c.lines()[-1].startswith("ERROR registration-timeout ")
    assert c.closed


def test_registered_before_timeout_stays():
    clock = Clock()
    factory = make_factory(clock=clock)
    c = FakeClient(factory)
    c.send("NICK early\n")
    clock.advance(31)
    assert not c.closed


def test_idle_client_is_pinged_then_dropped():
    clock = Clock()
    factory = make_factory(clock=clock)
    quiet = registered(factory, "quiet", "#a")
    watcher = registered(factory, "watcher", "#a")
    quiet.lines()
    clock.advance(119)
    assert quiet.lines() == []
    clock.advance(1)
    [ping] = quiet.lines()
    assert ping.startswith("PING ")
    clock.advance(59)
    assert not quiet.closed
    watcher.send("PONG x\n")  # the watcher stays alive meanwhile
    clock.advance(1)
    assert quiet.lines()[-1].startswith("ERROR ping-timeout ")
    assert quiet.closed
    quiet.drop()
    assert watcher.lines()[-1] == "QUIT quiet ping timeout"


def test_answering_ping_keeps_the_connection():
    clock = Clock()
    factory = make_factory(clock=clock)
    c = registered(factory, "c")
    for _ in range(5):
        clock.advance(120)
        [ping] = c.lines()
        c.send(f"PONG {ping.split()[1]}\n")
        assert c.lines() == []
    assert not c.closed


def test_any_activity_postpones_the_ping():
    clock = Clock()
    factory = make_factory(clock=clock)
    c = registered(factory, "c")
    for _ in range(10):
        clock.advance(100)
        c.send("PING mine\n")
        assert c.lines() == ["PONG mine"]
    assert not c.closed


def test_timeouts_off():
    clock = Clock()
    factory = make_factory(clock=clock, limits=Limits(register_timeout=0, idle_timeout=0))
    c = FakeClient(factory)
    r = registered(factory, "r")
    clock.advance(100_000)
    assert not c.closed and not r.closed
    assert clock.getDelayedCalls() == []


def test_closed_connections_leave_no_timers():
    clock = Clock()
    factory = make_factory(clock=clock)
    clients = [registered(factory, f"u{i}", "#a") for i in range(5)]
    for c in clients:
        c.drop()
    assert clock.getDelayedCalls() == []
    assert factory.hub.connections == set() and factory.hub.per_host == {}


# --- shutdown -----------------------------------------------------------------


def test_close_all_tells_everyone_and_aborts_stragglers():
    clock = Clock()
    factory = make_factory(clock=clock)
    polite = registered(factory, "polite", "#a")
    stuck = registered(factory, "stuck", "#a")
    polite.lines(), stuck.lines()
    done = factory.close_all()
    for c in (polite, stuck):
        assert c.lines() == ["ERROR server-shutdown the server is shutting down"]
        assert c.closed
    polite.drop()  # its connection finished closing
    assert stuck.lines() == []  # no QUIT storm during shutdown
    assert not done.called
    clock.advance(3)
    assert stuck.transport.disconnected  # aborted after the grace period
    stuck.drop()
    assert done.called
