"""
Several relays as one chat: the replicated relay state, with no I/O.

Relays linked through Redis (``redislink.py``) share one ordered log of
every command that changes the chat -- NICK, JOIN, PART, MSG, a TOPIC
being set, a member leaving, a relay dying -- and each relay applies the
whole log, in order, to its own copy of the ordinary L{Relay}.  The relay
state is deterministic (the time of each change travels in its entry), so
every copy makes the same decisions: the first of two NICKs for one name
in the log wins on every relay at once, message ids come out the same,
history and client-id de-duplication are shared, and a sender's commands
keep their order.  Members connected elsewhere are placeholder L{Member}s
whose ``send`` does nothing: each relay writes only to its own clients,
and a refusal reaches only the member that asked, through its own relay.

A relay joining a running cluster starts from a snapshot of this state
(L{Replica.snapshot}, L{Replica.restore}) and the log after it.

An entry is a JSON array ``[relay, conn, seq, time_ms, op, *args]``:
``relay`` names the relay process that appended it (an id chosen at
start), ``conn`` the connection there, ``seq`` counts that relay's
entries (an entry sent twice across a lost Redis reply is applied once).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Callable, Protocol

from twisted.logger import Logger

from chatsvc import grammar
from chatsvc.fanout import LocalFanout
from chatsvc.grammar import ProtocolError, error_line
from chatsvc.history import History, Record, RoomHistory
from chatsvc.relay import Member, Relay, Room

#: Entry kinds (the ``op`` of an entry).
NICK, JOIN, PART, MSG, TOPIC, QUIT, GONE = "N", "J", "P", "M", "T", "Q", "G"

#: The commands a client sends that become log entries.
REPLICATED = {"NICK": NICK, "JOIN": JOIN, "PART": PART, "MSG": MSG, "TOPIC": TOPIC, "QUIT": QUIT}

SNAPSHOT_VERSION = 1


def _nobody(line: bytes) -> None:
    """The send of a member connected to another relay: that relay writes to it."""


class LocalEnd(Protocol):
    """What the replica tells a connection of this relay about its entries."""

    member: Member | None

    def entry_applied(self, op: str, cost: int) -> None:
        """One of its entries took effect (or was refused: it was told why)."""


class Replica:
    """
    This relay's copy of the cluster's state, and how log entries change it.

    @param relay_id: this relay's id in the log.
    @param relay: the relay state every entry is applied to.
    """

    log = Logger()

    def __init__(self, relay_id: str, relay: Relay) -> None:
        self.relay_id = relay_id
        self.relay = relay
        self.time_ms = 0
        relay.now = self._now  # the entry's time, the same on every relay
        relay.logs_member = lambda member: member.send is not _nobody  # our own clients' only
        #: (relay id, conn) -> the member, for every registered member anywhere
        self.members: dict[tuple[str, int], Member] = {}
        #: conn -> this relay's connection, while it is open
        self.local: dict[int, LocalEnd] = {}
        #: relay id -> the last of its entry seqs applied
        self.applied: dict[str, int] = {}
        #: called when a relay's members were all removed (GONE)
        self.on_gone: Callable[[str], None] | None = None
        #: members connected to other relays, in all and per origin (the
        #: per-address and server-wide limits hold for the cluster)
        self.remote_total = 0
        self.remote_per_origin: Counter[str] = Counter()
        #: relay id -> its members (the heartbeat checks these relays every second)
        self.per_relay: Counter[str] = Counter()

    def _now(self) -> float:
        return self.time_ms / 1000

    # --- entries -------------------------------------------------------------------

    @staticmethod
    def entry(relay_id: str, conn: int, seq: int, time_ms: int, op: str, *args) -> str:
        return json.dumps([relay_id, conn, seq, time_ms, op, *args], ensure_ascii=False, separators=(",", ":"))

    def apply(self, raw: str) -> None:
        """Apply one log entry (a bad one is logged and skipped: never raises)."""
        try:
            relay_id, conn, seq, time_ms, op, *args = json.loads(raw)
            if not (isinstance(relay_id, str) and isinstance(conn, int) and isinstance(seq, int)
                    and isinstance(time_ms, int) and isinstance(op, str)):
                raise ValueError("fields of the wrong types")
        except (ValueError, TypeError):
            self.log.error("skipping a malformed cluster log entry: {entry!r}", entry=raw[:200])
            return
        if seq <= self.applied.get(relay_id, 0):
            return  # sent twice (its Redis reply was lost): applied already
        self.applied[relay_id] = seq
        self.time_ms = max(self.time_ms, time_ms)  # never backwards, whatever the relays' clocks say
        local = self.local.get(conn) if relay_id == self.relay_id else None
        cost = 1
        try:
            if op == GONE:
                self._gone(args[0], args[1])
                return
            cost = self._apply(relay_id, conn, local, op, args)
        except ProtocolError as e:
            member = self.members.get((relay_id, conn)) or (local.member if local is not None else None)
            if member is not None:
                member.send(error_line(e.code, e.text, cid=args[2] if op == MSG and len(args) > 2 else None))
        except Exception:
            self.log.failure("internal error applying cluster log entry {entry!r}", entry=raw[:200])
        finally:
            if local is not None:
                local.entry_applied(op, cost)

    def _apply(self, relay_id: str, conn: int, local: LocalEnd | None, op: str, args: list) -> int:
        relay = self.relay
        key = (relay_id, conn)
        member = self.members.get(key)
        if op == NICK:
            nick, origin, peer = args
            if member is None:
                if local is not None and local.member is not None:
                    member = local.member
                else:
                    member = Member(_nobody, peer, origin)
            cost = relay.set_nick(member, nick)
            if key not in self.members:
                self._add(key, member)
            return cost
        if member is None:
            # Not registered: its NICK, sent just before, was refused (a
            # local client is told, as one relay would tell it), or it is
            # gone already.
            if local is not None and op != QUIT:
                command = {JOIN: "JOIN", PART: "PART", MSG: "MSG", TOPIC: "TOPIC"}[op]
                raise ProtocolError("not-registered", f"{command} needs a nick first: send NICK <nick>")
            return 1
        if op == QUIT:
            self._remove(key)
            relay.quit(member, args[0])
            return 1
        if op == JOIN:
            relay.join(member, args[0], args[1])
            return 1
        if op == PART:
            relay.part(member, args[0], args[1])
            return 1
        if op == MSG:
            target, payload, cid = args
            relay.message(member, target, payload, cid=cid)
            return 1
        if op == TOPIC:
            return relay.topic(member, args[0], args[1])
        raise ValueError(f"unknown entry kind {op!r}")

    def _gone(self, relay_id: str, reason: str) -> None:
        """A relay died (or left): its members quit, everywhere."""
        gone = [key for key in self.members if key[0] == relay_id]
        if gone:
            self.log.info("relay {relay} is gone: {count} members leave", relay=relay_id, count=len(gone))
        for key in gone:
            member = self._remove(key)
            self.relay.quit(member, reason)
        self.applied.pop(relay_id, None)
        if self.on_gone is not None:
            self.on_gone(relay_id)

    def _add(self, key: tuple[str, int], member: Member) -> None:
        self.members[key] = member
        self.per_relay[key[0]] += 1
        if key[0] != self.relay_id:
            self.remote_total += 1
            if member.origin:
                self.remote_per_origin[member.origin] += 1

    def _remove(self, key: tuple[str, int]) -> Member:
        member = self.members.pop(key)
        self.per_relay[key[0]] -= 1
        if self.per_relay[key[0]] <= 0:
            del self.per_relay[key[0]]
        if key[0] != self.relay_id:
            self.remote_total -= 1
            if member.origin:
                self.remote_per_origin[member.origin] -= 1
                if self.remote_per_origin[member.origin] <= 0:
                    del self.remote_per_origin[member.origin]
        return member

    # --- what the cluster as a whole has --------------------------------------------------

    def relays(self) -> set[str]:
        """The relays that have members, by id."""
        return set(self.per_relay)

    # --- snapshots -----------------------------------------------------------------------

    def snapshot(self) -> str:
        """The whole state, as JSON, for a relay that joins later."""
        relay = self.relay
        history = relay.history
        keys = list(self.members)
        index = {self.members[k]: i for i, k in enumerate(keys)}
        state = {
            "v": SNAPSHOT_VERSION,
            "salt": relay.salt,
            "time": self.time_ms,
            "applied": self.applied,
            "members": [
                [k[0], k[1], self.members[k].nick, self.members[k].origin, self.members[k].peer] for k in keys
            ],
            "rooms": [[room.key, room.name, [index[m] for m in room.members]] for room in relay.rooms.values()],
            # each member's own room order (who hears of a NICK change first)
            "joined": [[r.key for r in self.members[k].rooms.values()] for k in keys],
            "topics": [[key, *topic] for key, topic in relay.topics.items()],
            "floor": history.floor,
            "issued": history.issued_max,
            "history": [
                [key, h.last_id, h.evicted_max,
                 [[r.id, r.sender, r.payload, r.time_ms, r.cid, r.origin] for r in h.records]]
                for key, h in history.rooms.items()
            ],
        }
        return json.dumps(state, ensure_ascii=False, separators=(",", ":"))

    def restore(self, raw: str) -> list[LocalEnd]:
        """
        Replace the state with a snapshot.  Returns this relay's connections
        that the snapshot does not know as they know themselves (registered
        here, unknown there): they must reconnect.
        """
        state = json.loads(raw)
        if state.get("v") != SNAPSHOT_VERSION:
            raise ValueError(f"snapshot version {state.get('v')!r}, this relay reads {SNAPSHOT_VERSION}")
        relay = self.relay
        registered = [conn for conn, end in self.local.items() if end.member is not None and end.member.nick]
        relay.salt = state["salt"]
        self.time_ms = state["time"]
        self.applied = {k: int(v) for k, v in state["applied"].items()}
        # start again from nothing: the fanout's registry too
        for member in list(self.members.values()):
            relay.fanout.release_nick(member, member.nick)
            member.nick = None
            member.rooms = {}
        relay.rooms.clear()
        self.members = {}
        self.remote_total = 0
        self.remote_per_origin.clear()
        self.per_relay.clear()
        members: list[Member] = []
        for relay_id, conn, nick, origin, peer in state["members"]:
            local = self.local.get(conn) if relay_id == self.relay_id else None
            member = local.member if local is not None and local.member is not None else Member(_nobody, peer, origin)
            relay.fanout.claim_nick(member, nick)
            member.nick = nick
            member.rooms = {}
            self._add((relay_id, conn), member)
            members.append(member)
        rooms: dict[str, Room] = {}
        for key, name, who in state["rooms"]:
            room = rooms[key] = relay.rooms[key] = Room(name, key)
            for i in who:
                room.members[members[i]] = None
        for member, keys in zip(members, state["joined"]):
            for key in keys:
                room = rooms[key]
                member.rooms[grammar.name_key(room.name)] = room
        relay.topics.clear()
        for key, setter, time_ms, payload in state["topics"]:
            relay.topics[key] = (setter, time_ms, payload)
        _restore_history(relay.history, state)
        return [self.local[conn] for conn in registered if (self.relay_id, conn) not in self.members]


def _restore_history(history, state: dict) -> None:
    """A snapshot's ids and room histories, in place of the relay's."""
    history.floor = state["floor"]
    history.issued_max = state["issued"]
    history.rooms.clear()
    history.bytes = 0
    for key, last_id, evicted_max, records in state["history"]:
        room_history = RoomHistory(history.limit, last_id, evicted_max, history.max_bytes_per_room)
        for fields in records:
            record = Record(*fields)
            record.stored = True
            room_history.keep(record)
        room_history.last_id = last_id
        history.rooms[key] = room_history
        history.bytes += room_history.bytes


def new_relay(history_limit: int, max_line: int, large_room: int, log_messages: bool,
              require_proof: bool) -> Relay:
    """The relay state a linked relay applies the log to (history in memory: Redis keeps it)."""
    return Relay(
        max_line=max_line, log_messages=log_messages, large_room=large_room,
        require_proof=require_proof, fanout=ClusterFanout(History(history_limit, 0)),
    )


class ClusterFanout(LocalFanout):
    """
    The local fan-out, but reading history never reorders the rooms kept in
    memory: which rooms are forgotten first must be the same on every relay,
    and only the log (not who asked for HISTORY where) decides it.
    """

    def room_history(self, key: str) -> RoomHistory:
        found = self.history.rooms.get(key)
        if found is not None:
            return found
        return RoomHistory(self.history.limit, self.history.issued_max, self.history.issued_max,
                           self.history.max_bytes_per_room)
