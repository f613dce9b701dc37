"""Making untrusted text safe to show on a terminal (or anywhere else)."""

from __future__ import annotations


def clean(text: str) -> str:
    """
    Make untrusted text safe to print: control and format characters
    (escape sequences could rewrite the terminal, bidi overrides reorder
    what is shown) become visible placeholders.  Front ends apply it once
    more to everything they print, as a last line of defence.
    """
    return "".join(ch if ch.isprintable() or ch == " " else "\N{REPLACEMENT CHARACTER}" for ch in text)
