"""
Verifying a key takes two steps (docs/trust.md, *Verifying*): ``/verify
bob`` shows the safety number; ``/verify bob yes`` -- or the number typed
back -- marks bob's keys verified.  L{confirmation} decides what an answer
means, as a pure function of the answer and the numbers; the page's
``verification.js`` is its twin and both pass ``docs/vectors/verify.json``.
"""

from __future__ import annotations

from chatsvc.client.inbound import Decision

YES = frozenset({"yes", "y"})


def digits(text: str) -> str:
    """A safety number as typed (spaces, dashes, dots allowed) down to its digits; '' if not one."""
    stripped = "".join(ch for ch in text if ch not in " -.\t")
    return stripped if stripped.isascii() and stripped.isdigit() else ""


def confirmation(answer: str, offered: str | None, current: str | None) -> Decision:
    """
    What ``/verify nick <answer>`` does.

    ``offered``: the safety number shown by the last ``/verify nick`` (None:
    none shown); ``current``: the number of the keys seen under the nick
    now (None: none seen).  Returns show (the number, and how to confirm),
    confirm (mark verified), or refuse with a reason code.
    """
    answer = answer.strip()
    if current is None:
        return Decision("refuse", "no-keys")
    if not answer:
        return Decision("show", "compare")
    if answer.lower() in YES:
        if offered is None:
            return Decision("refuse", "not-compared")
        if offered != current:
            return Decision("refuse", "changed-since")
        return Decision("confirm", "yes")
    typed = digits(answer)
    if not typed:
        return Decision("refuse", "usage")
    if typed != digits(current):
        return Decision("refuse", "mismatch")
    return Decision("confirm", "number")
