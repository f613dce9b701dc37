"""
Tab completion in the terminal client: commands, room names and the nicks
of the current room, as irssi and weechat do it.  A pure function of the
line and the candidates; the front end applies the result.
"""

from __future__ import annotations

import os


def complete(before: str, commands: list[str], rooms: list[str], nicks: list[str]) -> tuple[str, list[str]]:
    """
    Complete the word that ends at the cursor (``before`` is the line up to
    it).  Returns the new text up to the cursor and the candidates when
    there were several (for the user to see); a unique match also gets its
    separator: ``": "`` after a nick that starts the line, else a space.
    """
    start = max(before.rfind(" ") + 1, 0)
    word = before[start:]
    head = before[:start]
    if not word:
        return before, []
    if start == 0 and word.startswith("/"):
        pool = ["/" + c for c in commands]
    elif word.startswith("#"):
        pool = rooms
    else:
        pool = nicks
    folded = word.casefold()
    matches = sorted({c for c in pool if c.casefold().startswith(folded)}, key=str.casefold)
    if not matches:
        return before, []
    if len(matches) == 1:
        sep = ": " if start == 0 and pool is nicks else " "
        return head + matches[0] + sep, []
    common = os.path.commonprefix([m.casefold() for m in matches])
    # keep the spelling of the first match for the common part
    longer = matches[0][: len(common)] if len(common) > len(word) else word
    return head + longer, matches
