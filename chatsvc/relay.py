"""
Relay state: who is connected under which nick, which rooms exist, and
where each line goes.

The state is a plain object with no knowledge of sockets or Twisted
protocols.  Each connection is represented by a L{Member}; the relay writes
ready-encoded lines to members through ``Member.send`` and raises
L{ProtocolError} for requests it refuses.  Lines that go to many recipients are
encoded once and the same bytes are handed to every one of them.
"""

from __future__ import annotations

import secrets

from collections import OrderedDict

import time
from typing import Callable, Iterable

from twisted.logger import Logger

from chatsvc import grammar
from chatsvc.fanout import Fanout, LocalFanout
from chatsvc.grammar import ProtocolError, format_line, name_key
from chatsvc.history import History
from chatsvc.mailroom import Mailroom


#: Rooms one connection may be in at once (each costs the server memory).
MAX_ROOMS_PER_MEMBER = 100
#: A ROOMS reply lists at most this many rooms (the largest, in the order
#: they were made): the whole list of a busy server would be a big answer
#: to a 6-byte question.
MAX_ROOMS_LISTED = 100
#: Room topics kept (the rooms topics were set for least recently go first).
MAX_TOPICS = 1000


def room_key(name: str, proof: str | None) -> str:
    """
    The relay's key for a room: its case-folded name, and, for a room
    joined with a proof, a verifier of that proof.  Members who join the
    same name with different proofs (another passphrase, or an outsider
    with none) are in different rooms that never see each other -- so no
    one can squat a name, and no one without the proof gets a protected
    room's messages or history.  The proof is itself a one-way function of
    the room key (docs/encryption.md), so the relay keeps it as it is: no
    cryptography in the server.
    """
    key = name_key(name)
    if proof is None:
        return key
    return key + " " + proof


class Member:
    """
    One connection as the relay sees it.

    ``send`` is called with complete encoded lines (``bytes`` ending in
    ``\\n``); the front door passes its transport's write method, or its own
    accounting ``send`` while the client is behind (see ``tcpdoor.py``).
    """

    __slots__ = ("send", "peer", "origin", "nick", "rooms")

    def __init__(self, send: Callable[[bytes], object], peer: str = "?", origin: str | None = None) -> None:
        self.send = send
        self.peer = peer
        #: The network the connection comes from (an IPv4 address, an IPv6
        #: /64), for limits that must hold per sender, not per nick.
        self.origin = origin if origin is not None else peer
        self.nick: str | None = None
        self.rooms: dict[str, Room] = {}  # name_key(room) -> Room

    def route(self, send: Callable[[bytes], object]) -> None:
        """Where this member's lines go from now on (a door's fast path, or its accounting ``send``)."""
        self.send = send

    def __repr__(self) -> str:
        return f"<Member {self.nick or '(unregistered)'} {self.peer}>"


class Room:
    __slots__ = ("name", "key", "members")

    def __init__(self, name: str, key: str | None = None) -> None:
        self.name = name  # as first written
        self.key = key if key is not None else name_key(name)  # see room_key
        # A dict rather than a set keeps join order for NAMES listings while
        # staying O(1) for add, remove and membership tests.
        self.members: dict[Member, None] = {}


class Relay:
    """
    The rooms and nicks of one server.

    @param max_line: the line limit, used to split NAMES replies.
    @param log_messages: log each relayed payload (as received: ciphertext).
    @param large_room: from this many members on, a room is *large*: its
        members are no longer told of each JOIN, PART, QUIT and NICK (that
        is quadratic in the room's size when many join at once); instead a
        joiner gets the member count, not the whole list, and members get
        ``MEMBERS <room> <count>`` from L{announce_counts}, called
        periodically.  ``NAMES`` still lists everyone.  0: never large.
    @param history: message ids and room history (by default: the last
        1,000 messages of each room, in memory).
    @param now: the clock, in seconds since the epoch.
    """

    log = Logger()

    def __init__(
        self,
        max_line: int = grammar.DEFAULT_MAX_LINE,
        log_messages: bool = False,
        large_room: int = 0,
        history: History | None = None,
        now: Callable[[], float] = time.time,
        require_proof: bool = False,
        salt: str = "",
        fanout: Fanout | None = None,
    ) -> None:
        #: This deployment's key-derivation salt, announced by CAPS so that
        #: no two deployments share one (docs/encryption.md, aes2).
        self.salt = salt
        self.now = now
        self.require_proof = require_proof
        if fanout is None:
            fanout = LocalFanout(history if history is not None else History(1000, int(now() * 1000)))
        #: nicks, delivery, ids, history, cids: everything linked relays share
        self.fanout = fanout
        self.history = fanout.history
        self.max_line = max_line
        self.log_messages = log_messages
        self.large_room = large_room
        self._changed: dict[str, None] = {}  # large rooms whose count changed
        self.rooms: dict[str, Room] = {}  # room_key -> Room
        #: room_key -> (setter, time in ms, payload): opaque, like history;
        #: kept while the room is empty too, the oldest forgotten first
        self.topics: OrderedDict[str, tuple[str, str, str]] = OrderedDict()
        if self.history.store is not None:  # kept across restarts, like history
            self.topics.update(self.history.store.topics(MAX_TOPICS))
        #: Set while the server shuts down: everyone is leaving at once, so
        #: QUIT notices would only be quadratic noise.
        self.closing = False
        #: Whose comings and goings this relay logs: linked relays log their
        #: own clients' only (cluster.py), not every member of the chat N times.
        self.logs_member: Callable[[Member], bool] = lambda member: True
        #: room messages and history (mailroom.py)
        self.mailroom = Mailroom(self)

    # --- nicks -------------------------------------------------------------

    def set_nick(self, member: Member, nick: str) -> int:
        """
        Register or change a nick; returns how many lines that sent, so the
        caller can charge a change seen by thousands to the flood budget.
        """
        if not grammar.is_valid_nick(nick):
            raise ProtocolError("nick-invalid", f"{grammar.printable(nick, 40)} is not a valid nick")
        old = member.nick
        self.fanout.claim_nick(member, nick)
        member.nick = nick
        member.send(format_line("OK", "NICK", nick))
        if old is None:
            if self.logs_member(member):
                self.log.info("{peer} registered as {nick}", peer=member.peer, nick=nick)
            return 1
        if old == nick:
            return 1
        if self.logs_member(member):
            self.log.info("{old} is now known as {nick}", old=old, nick=nick)
        line = format_line("NICK", old, nick)
        audience = self._audience(member)
        for peer in audience:
            peer.send(line)
        return 1 + len(audience)

    def _audience(self, member: Member) -> Iterable[Member]:
        """
        The member itself and everyone sharing a room with it, once each --
        except in large rooms, whose members only see the count change.
        """
        seen: dict[Member, None] = {member: None}
        for room in member.rooms.values():
            if self._is_large(room):
                self._changed[room.key] = None
            else:
                seen.update(room.members)
        return list(seen)

    def _is_large(self, room: Room) -> bool:
        return bool(self.large_room) and len(room.members) >= self.large_room

    def announce_counts(self) -> None:
        """Tell the members of each large room that changed how many they are."""
        changed, self._changed = self._changed, {}
        for key in changed:
            room = self.rooms.get(key)
            if room is not None and self._is_large(room):
                self.fanout.to_room(room, format_line("MEMBERS", room.name, str(len(room.members))))

    # --- rooms -------------------------------------------------------------

    def join(self, member: Member, name: str, proof: str | None = None) -> None:
        if not grammar.is_valid_room(name):
            raise ProtocolError("room-invalid", f"{grammar.printable(name, 80)} is not a valid room name")
        if proof is not None and not grammar.is_valid_proof(proof):
            raise ProtocolError("bad-syntax", "JOIN proof: 16-64 base64url characters")
        if proof is None and self.require_proof:
            raise ProtocolError(
                "proof-required", "this server only has rooms joined with a proof (a client for encryption scheme aes2)"
            )
        key = room_key(name, proof)
        room = member.rooms.get(name_key(name))
        if room is None:
            if len(member.rooms) >= MAX_ROOMS_PER_MEMBER:
                raise ProtocolError("too-many-rooms", f"you are in {MAX_ROOMS_PER_MEMBER} rooms already; PART one first")
            room = self.rooms.get(key)
            if room is None:
                room = self.rooms[key] = Room(name, key)
            room.members[member] = None
            member.rooms[name_key(name)] = room
            self.mailroom.when_loaded(member, key, lambda: None)  # read its history ahead
            if self.logs_member(member):
                self.log.info("{nick} joined {room}", nick=member.nick, room=room.name)
            line = format_line("JOIN", room.name, member.nick)
            if self._is_large(room):
                self._changed[key] = None
                member.send(line)
            else:
                self.fanout.to_room(room, line)
        elif room.key != key:
            raise ProtocolError("room-invalid", f"you are in {room.name} already (joined with another proof); PART it first")
        if self._is_large(room):
            member.send(format_line("MEMBERS", room.name, str(len(room.members))))
            member.send(format_line("ENDNAMES", room.name))
        else:
            self.send_names(member, name)
        topic = self.topics.get(room.key)
        if topic is not None:
            member.send(format_line("TOPIC", room.name, *topic))

    def topic(self, member: Member, name: str, payload: str | None = None) -> int:
        """
        ``TOPIC <room>``: the room's topic, if any.  ``TOPIC <room> <payload>``:
        set it (an end-to-end encrypted text the relay keeps as it came); every
        member gets the new one.  Returns the lines sent (the command's cost).
        """
        room = self.my_room(member, name)
        if payload is None:
            topic = self.topics.get(room.key)
            member.send(format_line("TOPIC", room.name, *topic) if topic else format_line("TOPIC", room.name))
            return 1
        if len(payload) > grammar.MAX_TOPIC_CHARS or " " in payload:
            raise ProtocolError("bad-syntax", f"TOPIC payload: one word of at most {grammar.MAX_TOPIC_CHARS} characters")
        topic = (member.nick, str(int(self.now() * 1000)), payload)
        self.topics[room.key] = topic
        self.topics.move_to_end(room.key)
        while len(self.topics) > MAX_TOPICS:
            self.topics.popitem(last=False)
        if self.history.store is not None:
            self.history.store.save_topic(room.key, topic, MAX_TOPICS, self._topic_not_saved)
        self.fanout.to_room(room, format_line("TOPIC", room.name, *topic))
        return len(room.members)

    def _topic_not_saved(self, error: Exception) -> None:
        self.log.error("could not save a room topic in the store: {error}", error=error)

    def part(self, member: Member, name: str, reason: str | None = None) -> None:
        room = self.my_room(member, name)
        args = (room.name, member.nick) + ((reason,) if reason else ())
        line = format_line("PART", *args)
        if self._is_large(room):
            self._changed[room.key] = None
            member.send(line)
        else:
            self.fanout.to_room(room, line)
        self._leave(member, room)
        if self.logs_member(member):
            self.log.info("{nick} left {room}", nick=member.nick, room=room.name)

    def send_names(self, member: Member, name: str) -> None:
        room = self.my_room(member, name)
        nicks = [m.nick for m in room.members]
        for line in grammar.names_lines(room.name, nicks, self.max_line):
            member.send(line)

    def list_rooms(self, member: Member) -> int:
        """
        The rooms, oldest first -- only the largest MAX_ROOMS_LISTED of
        them on a busy server -- one line each, by
        name: rooms of one name joined with different proofs are counted
        together (the proof is not the lister's business).  Returns the
        number of lines, the command's cost.
        """
        counts: dict[str, list] = {}
        for room in self.rooms.values():
            entry = counts.setdefault(name_key(room.name), [room.name, 0])
            entry[1] += len(room.members)
        listed = list(counts.values())
        if len(listed) > MAX_ROOMS_LISTED:
            keep = set(map(id, sorted(listed, key=lambda e: -e[1])[:MAX_ROOMS_LISTED]))
            listed = [entry for entry in listed if id(entry) in keep]  # still oldest first
        for name, count in listed:
            member.send(format_line("ROOM", name, str(count)))
        member.send(format_line("ENDROOMS"))
        return len(listed) + 1

    def my_room(self, member: Member, name: str) -> Room:
        room = member.rooms.get(name_key(name))
        if room is None:
            raise ProtocolError("not-in-room", f"you are not in {grammar.printable(name, 80)}")
        return room

    def _leave(self, member: Member, room: Room) -> None:
        del member.rooms[name_key(room.name)]
        del room.members[member]
        if not room.members:
            del self.rooms[room.key]

    # --- messages (mailroom.py) --------------------------------------------------------

    def message(self, member: Member, target: str, payload: str, cid: str | None = None) -> None:
        self.mailroom.message(member, target, payload, cid)

    def send_history(self, member: Member, name: str, mode: str, value: str) -> None:
        self.mailroom.send_history(member, name, mode, value)

    # --- leaving -----------------------------------------------------------

    def quit(self, member: Member, reason: str) -> None:
        """
        Forget a member: it leaves every room (everyone sharing one with it is
        told once, with ``reason``) and its nick is freed.  Safe to call more
        than once and for members that never registered.
        """
        if member.nick is None:
            return
        line = format_line("QUIT", member.nick, reason) if reason else format_line("QUIT", member.nick)
        audience = [] if self.closing else [m for m in self._audience(member) if m is not member]
        for room in list(member.rooms.values()):
            self._leave(member, room)
        self.fanout.release_nick(member, member.nick)
        if self.logs_member(member):
            self.log.info("{nick} quit ({reason})", nick=member.nick, reason=reason)
        member.nick = None
        for peer in audience:
            peer.send(line)


def new_salt() -> str:
    """
    This deployment's key-derivation salt (docs/encryption.md, aes2): 128
    random bits, so no two deployments share one and no table of guesses
    computed for one serves another.  Kept in the store; without one, a
    new salt each run (there is no history to keep readable then).
    """
    return secrets.token_urlsafe(16)
