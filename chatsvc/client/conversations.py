"""
The client's conversations: the rooms it is in (as the relay writes their
names), the current one (a room, or a person after /query), the prompt
that names it, and unread counts on the status line.  As the page's
``conversations.js``; who is in which room is ``roster.py``.
"""

from __future__ import annotations

from typing import Callable

from chatsvc.client.roster import Roster
from chatsvc.grammar import name_key


class Conversations:
    """``verified(nick)``: whether the user verified nick's key (the query prompt shows it)."""

    def __init__(self, display, roster: Roster, verified: Callable[[str], bool] = lambda nick: False) -> None:
        self.display = display
        self.roster = roster
        self.verified = verified
        self.rooms: dict[str, str] = {}  # name_key -> room as the server writes it
        self.current: str | None = None

    def set_current(self, room: str | None) -> None:
        """The room (or, after /query, the person) typed lines go to."""
        self.current = room
        window = getattr(self.display, "set_window", None)  # a front end with windows shows that one
        if window is not None:
            window(room)
        self.show_prompt()
        self.roster.read(room)
        self.show_activity()

    def show_prompt(self) -> None:
        room = self.current
        if room is None:
            prompt = "[no room] "
        elif room.startswith("#"):
            prompt = f"[{room}] "
        else:
            prompt = f"[→ {room}{', verified' if self.verified(room) else ''}] "
        self.display.set_prompt(prompt)

    def attention(self, where: str, mention: bool) -> None:
        """A line arrived in ``where`` (a room or a person): count it unless it is in view."""
        if not self.current or name_key(where) != name_key(self.current):
            self.roster.message_in(where, mention)
            self.show_activity()

    def show_activity(self) -> None:
        """Unread counts per room on the status line, where the front end has one."""
        setter = getattr(self.display, "set_activity", None)
        if setter is not None:
            rooms = {**{n: n for n in self.roster.unread}, **self.rooms}
            setter(self.roster.activity(rooms))
