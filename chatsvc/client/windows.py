"""
The terminal's windows, as in irssi and weechat: each room and each
private conversation keeps its own scrollback, and the screen shows one of
them -- the current one, where typed lines go -- from its last line or
scrolled back a page at a time.  Lines the session does not place (the
connection's news, command answers) go to the window in view.

Pure: lines in, rows out (wrapped with a hanging indent by ``lineview``);
the interactive front end (``terminal.py``) draws them.  Unread counts are
the session's (``roster.py``): they show on the status line.
"""

from __future__ import annotations

from collections import deque

from chatsvc.client import lineview
from chatsvc.grammar import name_key

#: Lines kept per window.
SCROLLBACK = 2000
#: Where text starts in a line is looked for this far in, at most (columns).
MAX_INDENT = 40


class Window:
    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: deque[str] = deque(maxlen=SCROLLBACK)


class Windows:
    def __init__(self) -> None:
        self.windows: dict[str, Window] = {}
        self.current = ""  # "": before any room, the connection's news
        self.windows[""] = Window("")
        self.back = 0  # rows scrolled back from the bottom of the current window

    def key(self, where: str | None) -> str:
        return self.current if where is None else name_key(where)

    def add(self, where: str | None, line: str) -> bool:
        """Keep ``line`` in its window; True if it shows now (in view, not scrolled back)."""
        key = self.key(where)
        window = self.windows.get(key)
        if window is None:
            window = self.windows[key] = Window(where or "")
        window.lines.append(line)
        return key == self.current and self.back == 0

    def select(self, where: str | None) -> bool:
        """Show ``where``'s window (from its last line); True if that changed what is shown."""
        key = name_key(where) if where else self.current
        if key not in self.windows:
            self.windows[key] = Window(where or "")
            if self.current == "" and key != "":
                # the first window takes what was said before it (connecting, joining)
                self.windows[key].lines.extend(self.windows[""].lines)
        changed = key != self.current or self.back != 0
        self.current, self.back = key, 0
        return changed

    def page(self, rows: int, columns: int, height: int) -> bool:
        """Scroll back (rows > 0) or forward; True if the view moved."""
        total = len(self.wrapped(columns))
        back = min(max(self.back + rows, 0), max(total - height, 0))
        moved = back != self.back
        self.back = back
        return moved

    def wrapped(self, columns: int) -> list[str]:
        out: list[str] = []
        for line in self.windows[self.current].lines:
            out.extend(lineview.wrap(line, columns, indent_of(line)))
        return out

    def view(self, columns: int, height: int) -> list[str]:
        """The rows the screen shows of the current window: its last ``height``, or further back."""
        rows = self.wrapped(columns)
        end = len(rows) - self.back
        return rows[max(end - height, 0):end]


def indent_of(line: str) -> int:
    """Columns before a line's text: after "12:04 [#room] bob: ", else after "12:04 * "."""
    for marker in ("] ", "* ", "! "):
        at = line.find(marker)
        if 0 <= at < MAX_INDENT:
            rest = line[at + len(marker):]
            said = rest.find(": ")
            if marker == "] " and 0 <= said < MAX_INDENT - at:
                return lineview.text_width(line[:at + len(marker) + said + 2])
            return lineview.text_width(line[:at + len(marker)])
    return 2
