"""
The replicated relay state (chatsvc/cluster.py), without Redis: several
replicas applying one log in order make the same decisions, and a
snapshot carries the whole state to a relay that joins later.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from chatsvc.cluster import GONE, JOIN, MSG, NICK, PART, QUIT, TOPIC, Replica, new_relay
from chatsvc.relay import Member


class End:
    """A local connection as the replica sees it: a member that records what it is sent."""

    def __init__(self, peer: str = "10.0.0.1:1") -> None:
        self.lines: list[str] = []
        self.member = Member(lambda line: self.lines.append(line.decode().rstrip("\n")), peer, peer.split(":")[0])
        self.applied: list[str] = []

    def entry_applied(self, op: str, cost: int) -> None:
        self.applied.append(op)

    def take(self) -> list[str]:
        lines, self.lines = self.lines, []
        return lines


class Log:
    """The shared log: every entry goes to every replica, in one order."""

    def __init__(self, *names: str) -> None:
        self.replicas = {name: Replica(name, new_relay(100, 4096, 0, False, False)) for name in names}
        self.seq = {name: 0 for name in names}
        self.time = 1_700_000_000_000
        self.entries: list[str] = []

    def end(self, relay: str, conn: int) -> End:
        end = End(f"10.0.{len(self.replicas[relay].local)}.{conn}:1")
        self.replicas[relay].local[conn] = end
        return end

    def add(self, relay: str, conn: int, op: str, *args) -> None:
        self.seq[relay] += 1
        self.time += 1
        entry = Replica.entry(relay, conn, self.seq[relay], self.time, op, *args)
        self.entries.append(entry)
        for replica in self.replicas.values():
            replica.apply(entry)


def registered(log: Log, relay: str, conn: int, nick: str, *rooms: str) -> End:
    end = log.end(relay, conn)
    log.add(relay, conn, NICK, nick, end.member.origin, end.member.peer)
    for room in rooms:
        log.add(relay, conn, JOIN, room, None)
    end.take()
    return end


def test_the_first_nick_in_the_log_wins_on_every_relay():
    log = Log("a", "b")
    first, second = log.end("a", 1), log.end("b", 1)
    log.add("a", 1, NICK, "sam", "10.0.0.1", "p")
    log.add("b", 1, NICK, "sam", "10.0.0.2", "p")
    assert first.take() == ["OK NICK sam"]
    assert second.take() == ["ERROR nick-taken sam is already in use"]
    assert first.applied == second.applied == [NICK]
    for replica in log.replicas.values():
        assert [m.nick for m in replica.members.values()] == ["sam"]


def test_commands_sent_right_after_a_refused_nick_are_refused_as_one_relay_would():
    log = Log("a", "b")
    registered(log, "b", 1, "sam")
    late = log.end("a", 1)
    log.add("a", 1, NICK, "sam", late.member.origin, late.member.peer)
    log.add("a", 1, JOIN, "#x", None)  # sent before the answer to its NICK came
    log.add("a", 1, MSG, "#x", "hi", "c1")
    assert late.take() == [
        "ERROR nick-taken sam is already in use",
        "ERROR not-registered JOIN needs a nick first: send NICK <nick>",
        "@cid=c1 ERROR not-registered MSG needs a nick first: send NICK <nick>",
    ]
    assert late.applied == [NICK, JOIN, MSG]


def test_room_messages_get_the_same_id_everywhere_and_reach_each_relays_own_members():
    log = Log("a", "b")
    alice = registered(log, "a", 1, "alice", "#x")
    bob = registered(log, "b", 7, "bob", "#x")
    alice.take()
    log.add("a", 1, MSG, "#x", "ciphertext", "c1")
    (ok,) = alice.take()
    (relayed,) = bob.take()
    msg_id = ok.rsplit(" ", 1)[1]
    assert ok == f"@cid=c1 OK MSG #x {msg_id}"
    assert relayed == f"@id={msg_id} MSG alice #x ciphertext"
    a, b = (r.relay.history.rooms["#x"] for r in log.replicas.values())
    assert [r.id for r in a.records] == [r.id for r in b.records] == [int(msg_id)]
    # a refusal reaches only the one who asked
    log.add("b", 7, MSG, "#elsewhere", "x", "c2")
    assert bob.take() == ["@cid=c2 ERROR not-in-room you are not in #elsewhere"]
    assert alice.take() == []


def test_an_entry_sent_twice_is_applied_once():
    log = Log("a")
    alice = registered(log, "a", 1, "alice", "#x")
    entry = Replica.entry("a", 1, 99, log.time, MSG, "#x", "once", None)
    replica = log.replicas["a"]
    replica.apply(entry)
    replica.apply(entry)  # its Redis reply was lost, it went out again
    assert len(replica.relay.history.rooms["#x"].records) == 1
    assert len([line for line in alice.take() if line.startswith("@id=")]) == 0  # the sender gets OK, not a copy


def test_a_malformed_entry_is_skipped_never_raised():
    log = Log("a")
    replica = log.replicas["a"]
    for bad in ("not json", "[]", '["a"]', '{"x": 1}', '["z", 1, "1", 5, "N"]', '["z", 1, 1, 5, "?", 1]',
                '["z", 1, 2, 5, "N"]', '["z", 1, 3, 5, "J", 1, 2, 3]'):
        replica.apply(bad)
    alice = registered(log, "a", 1, "alice", "#x")
    assert replica.members and alice.member.nick == "alice"


def test_a_gone_relays_members_quit_everywhere():
    log = Log("a", "b")
    alice = registered(log, "a", 1, "alice", "#x")
    registered(log, "b", 1, "bob", "#x")
    alice.take()
    log.add("a", 0, GONE, "b", "connection lost")
    assert alice.take() == ["QUIT bob connection lost"]
    for replica in log.replicas.values():
        assert [m.nick for m in replica.members.values()] == ["alice"]
        assert replica.relay.fanout.find_nick("bob") is None


def test_members_elsewhere_are_counted_for_the_limits():
    log = Log("a", "b")
    registered(log, "b", 1, "bob")
    registered(log, "b", 2, "ben")
    a = log.replicas["a"]
    assert a.remote_total == 2 and sum(a.remote_per_origin.values()) == 2
    log.add("b", 1, QUIT, "")
    assert a.remote_total == 1
    log.add("a", 0, GONE, "b", "connection lost")
    assert a.remote_total == 0 and not a.remote_per_origin


def test_a_snapshot_carries_the_whole_state_to_a_relay_that_joins_later():
    log = Log("a", "b")
    registered(log, "a", 1, "alice", "#x", "#y")
    registered(log, "b", 1, "bob", "#y", "#x")
    log.add("a", 1, MSG, "#x", "one", "c1")
    log.add("b", 1, TOPIC, "#y", "topic-ciphertext")
    log.add("b", 1, PART, "#x", "bye")
    raw = log.replicas["a"].snapshot()
    late = Replica("c", new_relay(100, 4096, 0, False, False))
    assert late.restore(raw) == []
    assert late.snapshot() == raw == log.replicas["b"].snapshot()
    # from there on, it decides exactly as the others do
    log.replicas["c"] = late
    log.seq["c"] = 0
    carol = registered(log, "c", 1, "carol", "#x")
    log.add("a", 1, MSG, "#x", "two", "c2")
    (line,) = carol.take()
    assert line.endswith(" MSG alice #x two")
    assert len({r.snapshot() for r in log.replicas.values()}) == 1


def test_restore_names_local_connections_the_cluster_no_longer_knows():
    log = Log("a")
    alice = registered(log, "a", 1, "alice")
    empty = Replica("a", new_relay(100, 4096, 0, False, False)).snapshot()
    stale = log.replicas["a"].restore(empty)
    assert stale == [alice]


# --- any sequence of commands: every replica ends in the same state --------------------------

NICKS = ["ann", "ben", "cat", "ann"]
ROOMS = ["#a", "#b"]
commands = st.lists(
    st.tuples(
        st.sampled_from(["a", "b"]), st.integers(1, 3),
        st.sampled_from([NICK, JOIN, PART, MSG, TOPIC, QUIT, GONE]),
        st.integers(0, 3),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(commands, st.integers(0, 40))
def test_replicas_and_a_late_joiner_agree_whatever_the_commands(steps, join_at):
    log = Log("a", "b")
    for relay in ("a", "b"):
        for conn in (1, 2, 3):
            log.end(relay, conn)
    late = None
    for i, (relay, conn, op, pick) in enumerate(steps):
        if i == join_at:
            late = Replica("c", new_relay(100, 4096, 0, False, False))
            late.restore(log.replicas["a"].snapshot())
            log.replicas["c"] = late
        if op == NICK:
            member = log.replicas[relay].local[conn].member
            log.add(relay, conn, NICK, NICKS[pick], member.origin, member.peer)
        elif op in (JOIN, PART):
            log.add(relay, conn, op, ROOMS[pick % 2], None)
        elif op == MSG:
            log.add(relay, conn, MSG, ROOMS[pick % 2] if pick < 2 else NICKS[pick], f"m{i}", f"c{pick}")
        elif op == TOPIC:
            log.add(relay, conn, TOPIC, ROOMS[pick % 2], f"t{i}")
        elif op == QUIT:
            log.add(relay, conn, QUIT, "bye")
        else:
            log.add(relay, 0, GONE, "b" if relay == "a" else "a", "connection lost")
    snapshots = {name: r.snapshot() for name, r in log.replicas.items()}
    assert len(set(snapshots.values())) == 1, snapshots
    for replica in log.replicas.values():  # the counts kept for the heartbeat and the limits
        assert replica.relays() == {relay_id for relay_id, _ in replica.members}
        assert replica.remote_total == sum(1 for relay_id, _ in replica.members if relay_id != replica.relay_id)


def test_a_snapshot_of_another_version_is_refused_with_a_reason():
    import json

    import pytest

    log = Log("a")
    state = json.loads(log.replicas["a"].snapshot())
    state["v"] = 99
    with pytest.raises(ValueError, match="snapshot version 99"):
        Replica("b", new_relay(100, 4096, 0, False, False)).restore(json.dumps(state))
