"""
The fan-out seam: what a relay shares with the relays it is linked to.

The relay state (``relay.py``) decides *what* happens -- who may join, what
a reply says -- and goes through a L{Fanout} for everything that would
have to be shared if several relay processes acted as one chat: the nick
registry, delivering a line to a room's members, allocating message ids,
room history, and recognising a resent message by its client id.

L{LocalFanout} is the only implementation today: one process, plain dicts
and loops.  A cross-relay one (Redis, say) replaces it without touching
the connection core or the front doors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Protocol

from chatsvc import grammar
from chatsvc.grammar import ProtocolError, name_key
from chatsvc.history import History, Record, RoomHistory
from chatsvc.skeleton import skeleton

if TYPE_CHECKING:
    from chatsvc.relay import Member, Room


class Fanout(Protocol):
    history: History

    def claim_nick(self, member: "Member", nick: str) -> None:
        """Make ``nick`` the member's (raises ProtocolError nick-taken)."""

    def release_nick(self, member: "Member", nick: str) -> None:
        """The member no longer holds ``nick``."""

    def find_nick(self, nick: str) -> "Member | None":
        """Who holds a nick (for private messages)."""

    def to_room(self, room: "Room", line: bytes, skip: Iterable["Member"] = ()) -> None:
        """Deliver one encoded line to the room's members, but ``skip``."""

    def duplicate(self, key: str, sender: str, cid: str) -> Record | None:
        """The record a (sender, cid) already made in the room, if any."""

    def new_record(
        self, key: str, sender: str, payload: str, time_ms: int, cid: str | None, origin: str | None
    ) -> Record:
        """A room message, with its id allocated, kept in the room's history."""

    def room_history(self, key: str) -> RoomHistory:
        """The room's kept messages (for HISTORY)."""


class LocalFanout:
    """One relay process on its own: dicts for the registry, loops for delivery."""

    def __init__(self, history: History) -> None:
        self.history = history
        self.nicks: dict[str, Member] = {}  # name_key(nick) -> Member
        self.skeletons: dict[str, Member] = {}  # skeleton(nick) -> Member

    # --- nicks -----------------------------------------------------------------------

    def claim_nick(self, member: "Member", nick: str) -> None:
        holder = self.nicks.get(name_key(nick))
        if holder is not None and holder is not member:
            raise ProtocolError("nick-taken", f"{nick} is already in use")
        lookalike = self.skeletons.get(skeleton(nick))
        if lookalike is not None and lookalike is not member:
            raise ProtocolError("nick-taken", f"{nick} looks too much like {lookalike.nick}, who is here")
        if member.nick is not None:
            self.release_nick(member, member.nick)
        self.nicks[name_key(nick)] = member
        self.skeletons[skeleton(nick)] = member

    def release_nick(self, member: "Member", nick: str) -> None:
        if self.nicks.get(name_key(nick)) is member:
            del self.nicks[name_key(nick)]
        shape = skeleton(nick)
        if self.skeletons.get(shape) is member:
            del self.skeletons[shape]

    def find_nick(self, nick: str) -> "Member | None":
        return self.nicks.get(name_key(nick)) if grammar.is_valid_nick(nick) else None

    # --- delivery ----------------------------------------------------------------------

    def to_room(self, room: "Room", line: bytes, skip: Iterable["Member"] = ()) -> None:
        # The hot path of the whole relay: the same bytes object goes to
        # every member (encoded once), and each member's send is, while its
        # client keeps up, its transport's write itself (see tcpdoor).
        # A copy of the members: a send may end in someone leaving.
        if not skip:
            for member in list(room.members):
                member.send(line)
        elif len(skip) == 1:
            (sender,) = skip
            for member in list(room.members):
                if member is not sender:
                    member.send(line)
        else:
            skip = set(skip)
            for member in list(room.members):
                if member not in skip:
                    member.send(line)

    # --- ids and history -------------------------------------------------------------------

    def duplicate(self, key: str, sender: str, cid: str) -> Record | None:
        return self.history.room(key).by_cid.get((name_key(sender), cid))

    def new_record(
        self, key: str, sender: str, payload: str, time_ms: int, cid: str | None, origin: str | None
    ) -> Record:
        return self.history.new_record(key, sender, payload, time_ms, cid, origin)

    def room_history(self, key: str) -> RoomHistory:
        return self.history.room(key)
