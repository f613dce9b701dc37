"""
Who is where, as far as this client can tell, and what the user asked to
hear from whom: room members (from JOIN, PART, QUIT, NICK and NAMES lines),
nicks ignored, away messages others sent, unread and mention counts per
room.  Plain Python, no I/O: the session feeds it, /whois, tab completion
and the status line read it.
"""

from __future__ import annotations

import re

from chatsvc.grammar import name_key

_WORD = re.compile(r"[\w.\-]+")


def mentions(text: str, nick: str | None) -> bool:
    """Does ``text`` name ``nick`` (a whole word, any case)?"""
    if not nick:
        return False
    me = name_key(nick)
    return any(name_key(word.strip(".-")) == me or name_key(word) == me for word in _WORD.findall(text))


class Roster:
    def __init__(self) -> None:
        self.members: dict[str, dict[str, str]] = {}  # room key -> nick key -> nick
        self.ignored: dict[str, str] = {}  # nick key -> nick as typed
        self.away: dict[str, str] = {}  # nick key -> their away text, as they last told us
        self.unread: dict[str, list[int]] = {}  # room key -> [messages, mentions]

    # --- membership ---------------------------------------------------------------

    def joined(self, room: str, nick: str) -> None:
        self.members.setdefault(name_key(room), {})[name_key(nick)] = nick

    def names(self, room: str, nicks: list[str], first: bool) -> None:
        """A NAMES line; ``first``: the first of a reply, which replaces the list."""
        members = self.members.setdefault(name_key(room), {})
        if first:
            members.clear()
        for nick in nicks:
            members[name_key(nick)] = nick

    def parted(self, room: str, nick: str, me: bool) -> None:
        if me:
            self.members.pop(name_key(room), None)
            self.unread.pop(name_key(room), None)
        else:
            self.members.get(name_key(room), {}).pop(name_key(nick), None)

    def quit(self, nick: str) -> list[str]:
        """Everywhere the nick was; returns those room keys."""
        gone = []
        for room, members in self.members.items():
            if members.pop(name_key(nick), None) is not None:
                gone.append(room)
        self.away.pop(name_key(nick), None)
        return gone

    def renamed(self, old: str, new: str) -> None:
        for members in self.members.values():
            if members.pop(name_key(old), None) is not None:
                members[name_key(new)] = new
        if name_key(old) in self.away:
            self.away[name_key(new)] = self.away.pop(name_key(old))
        if name_key(old) in self.ignored:  # the person is ignored, whatever they call themselves
            del self.ignored[name_key(old)]
            self.ignored[name_key(new)] = new

    def rooms_of(self, nick: str) -> list[str]:
        return [room for room, members in self.members.items() if name_key(nick) in members]

    def nicks_in(self, room: str | None) -> list[str]:
        return list(self.members.get(name_key(room or ""), {}).values())

    # --- what the user asked --------------------------------------------------------

    def is_ignored(self, nick: str) -> bool:
        return name_key(nick) in self.ignored

    def set_away(self, nick: str, note: str | None) -> None:
        """Their away note (None: they are back)."""
        if note:
            self.away[name_key(nick)] = note
        else:
            self.away.pop(name_key(nick), None)

    # --- attention -------------------------------------------------------------------

    def message_in(self, room: str, mention: bool) -> None:
        counts = self.unread.setdefault(name_key(room), [0, 0])
        counts[0] += 1
        counts[1] += int(mention)

    def read(self, room: str | None) -> None:
        self.unread.pop(name_key(room or ""), None)

    def activity(self, rooms: dict[str, str]) -> str | None:
        """``#lobby 3 #dev 1!`` -- unread messages per room, ``!`` when someone named you."""
        parts = []
        for key, counts in self.unread.items():
            if counts[0]:
                parts.append(f"{rooms.get(key, key)} {counts[0]}{'!' if counts[1] else ''}")
        return " ".join(parts) or None
