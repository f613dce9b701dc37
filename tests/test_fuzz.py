"""Arbitrary bytes, split at arbitrary points, through the server protocol."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock

from chatsvc.grammar import name_key
from chatsvc.hub import Limits
from tests.support import FakeClient, make_factory, registered

# Mostly protocol-shaped input, so the fuzzer reaches deep states, mixed
# with raw garbage.
words = st.sampled_from(
    ["NICK", "JOIN", "PART", "MSG", "NAMES", "ROOMS", "PING", "PONG", "QUIT", "nick", "@t=1", "FROB"]
)
args = st.sampled_from(["#a", "#b", "#A", "alice", "bob", "fuzz", "fuzz2", "x y z", "-bad", "#", "", "é", "\x00"])
protocolish = st.lists(st.tuples(words, st.lists(args, max_size=3)), max_size=30).map(
    lambda cmds: "".join(" ".join([w, *a]) + "\n" for w, a in cmds).encode()
)
garbage = st.binary(max_size=400)
streams = st.lists(st.one_of(protocolish, garbage), min_size=1, max_size=4).map(b"".join)


def check_consistent(factory, protocols):
    relay = factory.relay
    live = {p.conn.member for p in protocols if p.conn.member is not None and p.conn.member.nick is not None}
    for key, member in relay.fanout.nicks.items():
        assert member in live and name_key(member.nick) == key
    for key, room in relay.rooms.items():
        assert room.members, "empty rooms must vanish"
        assert name_key(room.name) == key
        for member in room.members:
            assert member in live
            assert member.rooms[key] is room
    for member in live:
        for key, room in member.rooms.items():
            assert relay.rooms[key] is room and member in room.members


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams, st.lists(st.integers(1, 64), min_size=1, max_size=20), st.booleans())
def test_arbitrary_input_never_breaks_the_relay(data, cuts, flood_limit):
    clock = Clock()
    limits = Limits(
        max_line=200,
        flood_burst=5 if flood_limit else 0,
        flood_rate=2 if flood_limit else 0,
        idle_timeout=0,  # keep the bystanders connected while time passes
    )
    factory = make_factory(clock=clock, limits=limits)
    alice = registered(factory, "alice", "#a", "#b")
    bob = registered(factory, "bob", "#a")
    fuzz = FakeClient(factory, host="10.6.6.6")
    fuzz2 = FakeClient(factory, host="10.6.6.7")
    pos, i = 0, 0
    while pos < len(data):
        size = cuts[i % len(cuts)]
        target = fuzz if i % 3 else fuzz2
        target.protocol.dataReceived(data[pos : pos + size])  # must never raise
        pos += size
        i += 1
        clock.advance(1)
    clock.advance(3600)
    protocols = [c.protocol for c in (alice, bob, fuzz, fuzz2)]
    check_consistent(factory, protocols)
    for lines in (fuzz.lines(), fuzz2.lines()):
        assert not any(line.startswith("ERROR server-error") for line in lines)
    # the fuzzers hang up; everything they had is gone, others still work
    fuzz.drop()
    fuzz2.drop()
    check_consistent(factory, [alice.protocol, bob.protocol])
    assert set(factory.relay.fanout.nicks) <= {"alice", "bob"}
    alice.lines(), bob.lines()
    assert not alice.closed and not bob.closed
    alice.send("MSG #a still fine\n")
    assert "MSG alice #a still fine" in bob.lines()
