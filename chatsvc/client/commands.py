"""
The slash commands of the chat client: what ``/join``, ``/msg``, ``/send``
and the others typed by the user do to a session.

Only parsing and checking the user's words lives here; the session
(``session.py``) does the sending.  Tested alone with a stand-in session.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from chatsvc import grammar
from chatsvc.client.text import clean
from chatsvc.grammar import name_key

if TYPE_CHECKING:
    from chatsvc.client.session import ChatSession

HELP = """\
commands:
  text              send text to the current room
  /join #room       join a room and make it current
  /part [#room]     leave a room (default: the current one)
  /msg nick text    private message, encrypted like room messages
  /names            who is in the current room
  /rooms            rooms on the server
  /nick newnick     change your nick
  /send PATH        offer a file to the current room (/send nick PATH: to one person)
  /accept [id]      accept a file offer (/reject [id] to decline)
  /transfers        files on their way in or out, with their ids
  /cancel id        stop receiving or sending a file
  /help             this list
  /quit [reason]    leave (FIN works too); the reason is not encrypted, and others
                    see it marked as not verified
  //text            send text starting with a slash"""


def nick_problem(text: str) -> str:
    """Why a nick breaks the rules, in words."""
    if len(text) > grammar.MAX_NICK_CHARS:
        return f"at most {grammar.MAX_NICK_CHARS} characters"
    if text[0] in "-.":
        return "it may not start with - or ."
    bad = next((ch for ch in text if not (ch.isalnum() or ch in "_-.") or grammar.is_default_ignorable(ch)), None)
    if bad is not None and grammar.is_default_ignorable(bad):
        return "it holds an invisible character"
    return f"{clean(bad or '?')!r} is not allowed (letters, digits, _ - . only)"


def normalize_room(text: str) -> str:
    return text if text.startswith("#") else "#" + text


def _shell_words(text: str) -> list[str]:
    """Split as a shell would ("a b" and 'a b' are one word); unbalanced quotes: as typed."""
    import shlex

    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


class Commands:
    def __init__(self, session: "ChatSession") -> None:
        self.session = session

    def run(self, text: str) -> None:
        """A typed line starting with one slash."""
        command, _, rest = text[1:].partition(" ")
        handler = getattr(self, "cmd_" + command.lower(), None)
        if handler is None:
            self.session.problem(f"unknown command /{clean(command)}; /help lists them")
            return
        handler(rest.strip())

    def cmd_help(self, rest: str) -> None:
        s = self.session
        for line in HELP.splitlines():
            s.display.show(line)

    def cmd_join(self, rest: str) -> None:
        s = self.session
        if not rest or " " in rest:
            s.problem("usage: /join #room")
            return
        room = normalize_room(rest)
        if not grammar.is_valid_room(room):
            s.problem(f"{clean(room)} is not a valid room name")
            return
        known = s.rooms.get(name_key(room))
        if known:
            s.set_current(known)
            s.notice(f"now talking in {known}")
            return
        s.join_room(room)

    def _room_or_current(self, rest: str) -> str | None:
        s = self.session
        room = normalize_room(rest) if rest else s.current
        if room is None:
            s.problem("you are not in a room")
        return room

    def cmd_part(self, rest: str) -> None:
        s = self.session
        room = self._room_or_current(rest)
        if room is not None:
            s.protocol.part(room)

    def cmd_msg(self, rest: str) -> None:
        s = self.session
        nick, _, text = rest.partition(" ")
        if not nick or not text.strip():
            s.problem("usage: /msg nick text")
            return
        if nick.startswith("#"):
            s.problem("/msg is for people; to talk in a room, /join it and type")
            return
        s.send_private(nick, text)

    def cmd_send(self, rest: str) -> None:
        s = self.session
        words = _shell_words(rest)
        if not words or len(words) > 2:
            s.problem('usage: /send PATH (to the current room) or /send nick PATH; quote a path with spaces: "my file.txt"')
            return
        if len(words) == 2 and grammar.is_valid_nick(words[0]) and not Path(rest).expanduser().exists():
            s.transfers.send(words[0], words[1])
        elif len(words) == 2 and Path(rest).expanduser().exists():
            s.transfers.send(s.current, rest) if s.current else s.problem("you are not in a room; /join #room first")
        elif s.current is None:
            s.problem("you are not in a room; /join #room first, or /send nick PATH")
        else:
            s.transfers.send(s.current, words[0] if len(words) == 1 else rest)

    def cmd_accept(self, rest: str) -> None:
        self.session.transfers.accept(rest)

    def cmd_reject(self, rest: str) -> None:
        self.session.transfers.reject(rest)

    def cmd_transfers(self, rest: str) -> None:
        self.session.transfers.list()

    def cmd_cancel(self, rest: str) -> None:
        self.session.transfers.cancel(rest)

    def cmd_names(self, rest: str) -> None:
        s = self.session
        room = self._room_or_current(rest)
        if room is not None:
            s.protocol.request_names(room)

    def cmd_rooms(self, rest: str) -> None:
        self.session.protocol.request_rooms()

    def cmd_nick(self, rest: str) -> None:
        s = self.session
        if not rest:
            s.problem("usage: /nick newnick")
            return
        if " " in rest:
            s.problem(f"{clean(rest)} is not a valid nick: nicks have no spaces (1-32 letters, digits, _ - .)")
            return
        if not grammar.is_valid_nick(rest):
            s.problem(f"{clean(rest)} is not a valid nick: {nick_problem(rest)}")
            return
        s.wanted_nick = rest
        s.protocol.register(rest)

    def cmd_quit(self, rest: str) -> None:
        s = self.session
        s.leave(rest or None)
