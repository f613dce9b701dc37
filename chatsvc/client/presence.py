"""
Who is where, as the relay tells it: JOIN, PART, QUIT, NICK, NAMES,
MEMBERS and ROOMS lines become the roster's state, the rooms we are in,
the current window and one notice each.  Names come from the relay and
are shown through ``clean`` only; nothing here decides trust.
"""

from __future__ import annotations

from chatsvc.client.text import clean
from chatsvc.grammar import name_key

#: A reason (PART, QUIT) is shown at most this long: it is anyone's text.
MAX_REASON_SHOWN = 80


def unverified(reason: str) -> str:
    """A PART/QUIT reason: anyone's text, so never shown as if authentic."""
    short = reason if len(reason) <= MAX_REASON_SHOWN else reason[:MAX_REASON_SHOWN] + "…"
    return f' (reason, not verified: "{clean(short)}")'


class Presence:
    def __init__(self, session) -> None:
        self.session = session
        self.awaiting: set[str] = set()  # rooms to be in before ready
        self.switch_to: set[str] = set()  # joins that make the room current
        self._counts: dict[str, int] = {}  # large rooms' member counts
        self._joining_large: set[str] = set()
        #: who asked for each ROOMS reply on its way, in order: the user (/rooms) or
        #: a check after joining (room key -> members sharing our proof)
        self._rooms_asked: list[dict[str, int] | None] = []
        #: rooms rejoined after a drop: back quietly (no "you joined", no member list)
        self.rejoining: set[str] = set()
        self._check_next: set[str] = set()  # rooms we joined: check once their NAMES are in
        #: rooms we leave to join again under another key (a sealed room's new epoch): no "you left"
        self.moving: set[str] = set()

    def mine(self, nick: str) -> bool:
        me = self.session.nick
        return me is not None and name_key(nick) == name_key(me)

    def joined(self, room: str, nick: str) -> None:
        s = self.session
        s.roster.joined(room, nick)
        if not self.mine(nick):
            s.notice(f"{clean(nick)} joined {clean(room)}", room)
            return
        key = name_key(room)
        s.rooms[key] = room
        s.sealing.joined(room)
        if key in self.switch_to or s.current is None:
            self.switch_to.discard(key)
            s.set_current(room)
        if key not in self.rejoining:
            s.notice(f"you joined {clean(room)}{' (sealed)' if s.sealing.is_sealed(room) else ''}", room)

    def parted(self, room: str, nick: str, reason: str | None) -> None:
        s = self.session
        why = unverified(reason) if reason else ""
        me = self.mine(nick)
        s.roster.parted(room, nick, me)
        if not me:
            s.notice(f"{clean(nick)} left {clean(room)}{why}", room)
            return
        if name_key(room) in self.moving:
            self.moving.discard(name_key(room))
            s.rooms.pop(name_key(room), None)  # the JOIN under the new key follows
            s.sealing.epochs.parted(room)
            return
        s.rooms.pop(name_key(room), None)
        s.show_activity()
        s.notice(f"you left {clean(room)}{why}")
        s.sealing.left(room)
        if s.current and name_key(s.current) == name_key(room):
            s.set_current(next(iter(s.rooms.values()), None))

    def quit(self, nick: str, reason: str | None) -> None:
        self.session.roster.quit(nick)
        self.session.notice(f"{clean(nick)} quit{unverified(reason) if reason else ''}")
        self.session.reclaim.freed(nick)

    def nick_changed(self, old: str, new: str) -> None:
        s = self.session
        s.roster.renamed(old, new)
        if s.current and name_key(s.current) == name_key(old):
            s.set_current(new)  # a /query follows the person
        if self.mine(old):
            s.nick = new
            s.notice(f"you are now known as {clean(new)}")
            s.reclaim.answered()
        else:
            s.notice(f"{clean(old)} is now known as {clean(new)}")
            s.reclaim.freed(old)

    def joining(self, room: str, switch: bool) -> None:
        """A JOIN we send: wait for the room before ready; ``switch``: make it current."""
        self._joining_large.add(name_key(room))
        if switch:
            self.switch_to.add(name_key(room))

    def member_count(self, room: str, count: int) -> None:
        # Large rooms send counts instead of join notices; show the one that
        # answers our own join, not the periodic updates.
        key = name_key(room)
        if key in self.awaiting or key in self._joining_large:
            self._joining_large.discard(key)
            self.session.notice(f"{clean(room)} is a large room: {count} members (/names lists them)")
        self._counts[key] = count

    def name_list(self, room: str, nicks: list[str]) -> None:
        s = self.session
        s.roster.names(room, nicks, first=True)
        key = name_key(room)
        quiet = key in self.rejoining
        self.rejoining.discard(key)
        if (nicks or key not in self._counts) and not quiet:
            listed = (clean(n) + (" (verified)" if s.trust.verified(n) else "") for n in nicks)
            s.notice(f"in {clean(room)}: {', '.join(listed)}", room)
        if key in self._check_next:
            # Are there members of this name we cannot reach? The relay keeps
            # those who joined with another proof (another passphrase) apart,
            # and ROOMS counts them all: what anyone on the port can ask.
            self._check_next.discard(key)
            self.ask_rooms({key: len(nicks) or self._counts.get(key, 0)})
        self._joining_large.discard(key)
        self.awaiting.discard(key)
        if not s.ready and s.nick is not None and not self.awaiting:
            s.become_ready()

    def will_check(self, room: str) -> None:
        """A JOIN we send with a proof: once in, compare its members with the relay's count."""
        self._check_next.add(name_key(room))

    def ask_rooms(self, check: dict[str, int] | None = None) -> None:
        """ROOMS, for the user (``check`` None) or to compare a room's count with ours."""
        self._rooms_asked.append(check)
        self.session.protocol.request_rooms()

    def room_list(self, rooms: list[tuple[str, int]]) -> None:
        check = self._rooms_asked.pop(0) if self._rooms_asked else None
        if check is not None:
            self._compare(check, rooms)
            return
        if not rooms:
            self.session.notice("no rooms")
            return
        self.session.notice("rooms: " + ", ".join(f"{clean(r)} ({n})" for r, n in rooms))

    def _compare(self, ours: dict[str, int], rooms: list[tuple[str, int]]) -> None:
        for name, total in rooms:
            key = name_key(name)
            if key in ours and total > ours[key]:
                self.session.problem(apart_notice(clean(name), ours[key], total), name)


def apart_notice(room: str, ours: int, total: int) -> str:
    """What to say when ``total`` members of ``room`` are counted and ``ours`` share our proof."""
    others = total - ours
    if ours <= 1:
        return (f"{room} has {others} member{'s' if others != 1 else ''} but none share your passphrase "
                "— check it (they cannot read you, nor you them)")
    return (f"{room} has {others} more member{'s who use' if others != 1 else ' who uses'} another passphrase "
            "(or an older client): they cannot read this room, nor you theirs")
