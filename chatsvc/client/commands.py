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
  /me action        an action: /me waves shows "* you waves"
  /query nick       talk privately with nick: typed lines go to them (/part or /window ends it)
  /topic [text]     show the room's topic, or set it (encrypted like messages)
  /names            who is in the current room
  /whois nick       the rooms you share with nick, their away note, their key and whether you verified it
  /verify nick      the safety number to compare with nick (in person, on a call)
  /verify nick yes  they match: mark nick's key verified (or type the number back: /verify nick 01234 ...)
                    (also accepts a key that changed, after you compared)
  /retry nick       ask nick for their keys again (after they did not answer a key exchange)
  /unsafe nick      send the private messages waiting for nick's keys without forward secrecy
                    (keyed to your identities, or by the passphrase alone if theirs is unknown)
  /away [text]      answer private messages with "away: text" (once per person); /away alone: back
  /ignore [nick]    hide everything from nick, files too (alone: list); /unignore nick
  /window N         make your Nth room current (Alt-1..9 too); /window alone lists them
  /clear            clear the screen
  /rooms            rooms on the server
  /nick newnick     change your nick
  /send PATH        offer a file to the current room (/send nick PATH: to one person)
  /accept [id]      accept a file offer (/reject [id] to decline)
  /transfers        files on their way in or out, with their ids
  /cancel id        stop receiving or sending a file
sealed rooms (a key of their own instead of the passphrase; docs/client.md):
  /seal [#room]     make the room sealed, owned by you
  /invite nick      give nick the key of the current sealed room (/invite-link: a link for anyone)
  /members          who the current sealed room's key was given to, with fingerprints
  /remove nick      take the room back from nick: a new key for everyone else (/rekey: the same, nobody removed)
  /op nick          make nick an owner too
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
        handler = getattr(self, "cmd_" + command.lower().replace("-", "_"), None)
        if handler is None:
            self.session.problem(f"unknown command /{clean(command)}; /help lists them")
            return
        handler(rest.strip())

    def names(self) -> list[str]:
        """The commands, for tab completion."""
        return sorted(name[4:].replace("_", "-") for name in dir(self) if name.startswith("cmd_"))

    def completions(self, before: str) -> tuple[str, list[str]]:
        """Tab: complete commands, rooms and the current room's nicks (or the person of a /query)."""
        from chatsvc.client.completion import complete

        s = self.session
        current = s.current
        nicks = s.roster.nicks_in(current) if current and current.startswith("#") else []
        if current and not current.startswith("#"):
            nicks = [current]
        return complete(before, self.names(), list(s.rooms.values()), nicks)

    def cmd_me(self, rest: str) -> None:
        if not rest:
            self.session.problem("usage: /me action (e.g. /me waves)")
            return
        self.session.say(rest, action=True)

    def cmd_query(self, rest: str) -> None:
        s = self.session
        if not rest or " " in rest or not grammar.is_valid_nick(rest):
            s.problem("usage: /query nick (then what you type goes to nick alone)")
            return
        s.set_current(rest)
        s.notice(f"talking privately with {clean(rest)}; /part or /window N to go back to a room")

    def cmd_topic(self, rest: str) -> None:
        s = self.session
        if not s.current or not s.current.startswith("#"):
            s.problem("/topic is for rooms: switch to one first")
            return
        if rest:
            s.sender.set_topic(s.current, rest)
        else:
            s.sender.ask_topic(s.current)

    def cmd_window(self, rest: str) -> None:
        s = self.session
        rooms = list(s.rooms.values())
        if not rest:
            s.notice("rooms: " + (", ".join(f"{i} {clean(r)}" for i, r in enumerate(rooms, 1)) or "none"))
            return
        if not grammar.is_decimal(rest) or not 1 <= int(rest) <= len(rooms):
            s.problem(f"usage: /window N, N from 1 to {len(rooms)}" if rooms else "you are in no room")
            return
        s.set_current(rooms[int(rest) - 1])

    def cmd_clear(self, rest: str) -> None:
        clear = getattr(self.session.display, "clear", None)
        if clear is not None:
            clear()

    def cmd_ignore(self, rest: str) -> None:
        s = self.session
        roster = s.roster
        if not rest:
            s.notice("ignoring " + ", ".join(clean(n) for n in roster.ignored.values()) if roster.ignored else "ignoring nobody")
            return
        if not grammar.is_valid_nick(rest):
            s.problem("usage: /ignore nick")
            return
        roster.ignored[name_key(rest)] = rest
        s.notice(f"ignoring {clean(rest)} (messages and files) until /unignore {clean(rest)} or you quit")

    def cmd_unignore(self, rest: str) -> None:
        s = self.session
        if s.roster.ignored.pop(name_key(rest or ""), None) is None:
            s.problem(f"not ignoring {clean(rest)}" if rest else "usage: /unignore nick")
            return
        s.notice(f"no longer ignoring {clean(rest)}")

    def cmd_whois(self, rest: str) -> None:
        s = self.session
        if not rest or not grammar.is_valid_nick(rest):
            s.problem("usage: /whois nick")
            return
        rooms = [s.rooms.get(key, key) for key in s.roster.rooms_of(rest)]
        where = f"in {', '.join(clean(r) for r in rooms)} with you" if rooms else "in no room you share"
        away = s.roster.away.get(name_key(rest))
        extra = f"; away: {clean(away)}" if away else ""
        ignored = "; ignored" if s.roster.is_ignored(rest) else ""
        s.notice(f"{clean(rest)} is {where}{extra}{ignored}{s.key_status(rest)}")

    def cmd_verify(self, rest: str) -> None:
        s = self.session
        nick, _, answer = rest.partition(" ")
        if not nick or not grammar.is_valid_nick(nick):
            s.problem("usage: /verify nick, then /verify nick yes once the numbers match")
            return
        if not s.signing:
            s.problem("this client has no identity keys (the Caesar cipher signs nothing)")
            return
        s.verify(nick, answer)

    def cmd_retry(self, rest: str) -> None:
        if not rest or not grammar.is_valid_nick(rest):
            self.session.problem("usage: /retry nick")
            return
        self.session.sender.retry(rest)

    def cmd_unsafe(self, rest: str) -> None:
        if not rest or not grammar.is_valid_nick(rest):
            self.session.problem("usage: /unsafe nick (sends what waits for nick's keys without forward secrecy)")
            return
        self.session.sender.force(rest)

    def cmd_away(self, rest: str) -> None:
        s = self.session
        s.set_away(rest[:80] or None)
        s.notice(f"away: {clean(rest)} (sent once to whoever messages you privately)" if rest else "you are back")

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
        if not rest and s.current and not s.current.startswith("#"):
            s.notice(f"closed the conversation with {clean(s.current)}")
            s.set_current(next(iter(s.rooms.values()), None))  # a /query: back to a room
            return
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
        if room is not None and not room.startswith("#"):
            s.problem("/names lists a room's members; /whois nick for a person")
            return
        if room is not None:
            s.protocol.request_names(room)

    def cmd_rooms(self, rest: str) -> None:
        self.session.presence.ask_rooms()

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

    # --- sealed rooms (sealing.py) ----------------------------------------------------------

    def _nick_and_room(self, rest: str, usage: str) -> tuple[str, str | None] | None:
        words = rest.split()
        if not 1 <= len(words) <= 2 or not grammar.is_valid_nick(words[0]):
            self.session.problem(f"usage: {usage}")
            return None
        return words[0], normalize_room(words[1]) if len(words) == 2 else self.session.current

    def cmd_seal(self, rest: str) -> None:
        self.session.sealing.seal(normalize_room(rest) if rest else self.session.current)

    def cmd_members(self, rest: str) -> None:
        self.session.sealing.members(normalize_room(rest) if rest else self.session.current)

    def cmd_invite(self, rest: str) -> None:
        got = self._nick_and_room(rest, "/invite nick [#room] (or /invite-link [#room])")
        if got:
            self.session.sealing.invite(*got)

    def cmd_invite_link(self, rest: str) -> None:
        self.session.sealing.invite_link(normalize_room(rest) if rest else self.session.current)

    def cmd_remove(self, rest: str) -> None:
        got = self._nick_and_room(rest, "/remove nick [#room]")
        if got:
            self.session.sealing.rekey(got[1], remove=got[0])

    def cmd_rekey(self, rest: str) -> None:
        self.session.sealing.rekey(normalize_room(rest) if rest else self.session.current)

    def cmd_op(self, rest: str) -> None:
        got = self._nick_and_room(rest, "/op nick [#room]")
        if got:
            self.session.sealing.op(*got)

    def cmd_quit(self, rest: str) -> None:
        s = self.session
        s.leave(rest or None)
