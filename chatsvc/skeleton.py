"""
Nick skeletons: two nicks that look alike get the same skeleton, so the
relay can treat a look-alike of a nick in use as taken (``аlice`` with a
Cyrillic ``а``, ``ｂob`` in full width, ``rnallory`` for ``mallory``).

This follows Unicode TS #39 (section 4, "Confusable Detection"): map every
character to a prototype of its confusable class.  The data comes from the
``confusable-homoglyphs`` package, which ships the Unicode consortium's
``confusables.txt`` as a graph (each character and the characters it can be
confused with); classes are the connected parts of that graph, and the
prototype of a class is its ASCII member if it has one.  Plain Python with
no Twisted, like the grammar; the data is read once, on first use.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

# Left-to-right and right-to-left marks wrap some entries of the data set.
_BIDI_MARKS = str.maketrans("", "", "\u200e\u200f")


@lru_cache(maxsize=1)
def _table() -> dict[str, str]:
    from confusable_homoglyphs import confusables

    data = confusables.confusables_data
    parent: dict[str, str] = {}

    def find(ch: str) -> str:
        root = ch
        while parent.get(root, root) != root:
            root = parent[root]
        while ch != root:  # path compression
            parent[ch], ch = root, parent.get(ch, ch)
        return root

    def better(a: str, b: str) -> str:
        # ASCII first, then the lowest code point: a stable prototype.
        return min(a, b, key=lambda c: (not c.isascii(), ord(c)))

    multi: dict[str, str] = {}
    for char, glyphs in data.items():
        for glyph in glyphs:
            other = glyph["c"].translate(_BIDI_MARKS)
            if len(char) != 1 or not other:
                continue
            if len(other) == 1:
                a, b = find(char), find(other)
                if a != b:
                    keep = better(a, b)
                    parent[a if keep == b else b] = keep
            elif other.isascii() and other.isalnum():
                multi[char] = other  # e.g. m -> rn
    table = {ch: find(ch) for ch in set(parent) | set(data)}
    for ch, proto in list(table.items()):
        table[ch] = multi.get(proto, proto)
    for ch, seq in multi.items():
        table.setdefault(ch, seq)
    return table


def skeleton(name: str) -> str:
    """The look-alike class of a nick (case-insensitive, as nicks compare)."""
    table = _table()
    # NFKC first folds compatibility forms (full width, ligatures), as the
    # TS #31 identifier profile does before skeletons are compared.
    text = unicodedata.normalize("NFD", unicodedata.normalize("NFKC", name).casefold())
    mapped = "".join(table.get(ch, ch) for ch in text)
    return unicodedata.normalize("NFD", mapped).casefold()


def preload() -> None:
    """Build the table now (at start-up), not on the first NICK (~0.1 s)."""
    _table()
