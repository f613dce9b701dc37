"""
What part of the input line the terminal shows, in display columns.

A character is not a column: emoji and CJK take two, combining marks none.
The input line always takes exactly one row -- longer input scrolls
sideways, as in irssi -- so erasing it is erasing one row, and nothing is
left behind above the next message, however long the input.  Pure
functions, no terminal: the interactive front end (``terminal.py``) draws
what these say.
"""

from __future__ import annotations

from wcwidth import wcwidth

#: Shown at the edge where the input goes on beyond the screen.
MORE = "…"


def width(ch: str) -> int:
    """Columns one character takes (control characters, which never get here, count as one)."""
    w = wcwidth(ch)
    return 1 if w < 0 else w


def text_width(text) -> int:
    return sum(width(ch) for ch in text)


def visible(chars: list[str], cursor: int, columns: int) -> tuple[str, int]:
    """
    The slice of ``chars`` shown in ``columns`` columns with the cursor at
    index ``cursor`` in view, and the cursor's column within it.

    The last column stays free (writing there makes some terminals wrap).
    When the input is wider, the view jumps so the cursor sits about two
    thirds across, and a ``…`` marks each side that goes on.
    """
    room = max(columns - 1, 2)
    if text_width(chars) <= room:
        return "".join(chars), text_width(chars[:cursor])
    # Where the view starts: 0 if the cursor fits there, else far enough
    # right that the cursor is about two thirds across (one marker column).
    start = 0
    if text_width(chars[:cursor]) > room - 2:
        start = cursor
        used = 0
        target = max(1, room * 2 // 3)
        while start > 0 and used + width(chars[start - 1]) <= target:
            start -= 1
            used += width(chars[start])
    shown = MORE if start > 0 else ""
    used = len(shown)
    column = None
    end = start
    for i in range(start, len(chars)):
        if i == cursor:
            column = used
        w = width(chars[i])
        # keep a column for the right-hand marker if more follows
        limit = room - (1 if i < len(chars) - 1 else 0)
        if used + w > limit:
            break
        shown += chars[i]
        used += w
        end = i + 1
    if end < len(chars):
        shown += MORE
    if column is None:
        column = used if end == len(chars) else used - 1
    return shown, column


def wrap(text: str, columns: int, indent: int) -> list[str]:
    """
    ``text`` in rows of at most ``columns`` display columns, broken at
    spaces where it can be (a word longer than a row is cut), every row
    after the first starting with ``indent`` spaces: a hanging indent under
    the text after "12:04 [#room] bob: ".
    """
    columns = max(columns, 2)
    indent = min(max(indent, 0), columns // 2)
    rows: list[str] = []
    row, used = "", 0
    for word in _words(text):
        w = text_width(word)
        if used + w <= columns:
            row, used = row + word, used + w
            continue
        if row.strip():
            rows.append(row.rstrip(" "))
        row = " " * indent if rows else ""
        used = len(row)
        word = word.lstrip(" ")
        while used + text_width(word) > columns:  # longer than a row: cut it
            piece, taken = "", 0
            for ch in word:
                if used + taken + width(ch) > columns:
                    break
                piece, taken = piece + ch, taken + width(ch)
            if not piece:
                break
            rows.append(row + piece)
            row, used, word = " " * indent, indent, word[len(piece):]
        row, used = row + word, used + text_width(word)
    if row.strip() or not rows:
        rows.append(row.rstrip(" ") if rows else row)
    return rows


def _words(text: str) -> list[str]:
    """The text as words, each with the spaces before it."""
    out: list[str] = []
    current = ""
    for ch in text:
        if ch == " " and current and current[-1] != " ":
            out.append(current)
            current = ""
        current += ch
    if current:
        out.append(current)
    return out
