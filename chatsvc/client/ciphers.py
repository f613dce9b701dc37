"""
Message ciphers for the client, behind one small interface.

A cipher turns message text into a *payload* -- the opaque string the relay
forwards -- and back.  Payloads are self-describing: they start with a scheme
tag and a colon (``caesar:...``), so a client reading a payload made with a
cipher it does not use can say so instead of showing garbage.

The UI and the network protocol only ever see L{Cipher}; adding a cipher
means writing a class with this interface and offering it as a ``--cipher``
choice in ``__main__``.  The default, AES-256-GCM, lives in ``aesgcm.py``.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Context:
    """
    Where a message travels, as both ends can see it.

    ``target`` is the room (``#lobby``) for room messages and the
    recipient's nick for private ones; ``sender`` is the author's nick.
    Ciphers that authenticate bind the payload to this, so it cannot be
    replayed into another room or attributed to someone else.
    """

    target: str
    sender: str
    #: Part of a history reply the client asked for (possibly long after it
    #: was sent), not live: no freshness check, and a message seen before is
    #: not an error.  The session sets it, never the relay's tags alone.
    history: bool = False

    @property
    def is_private(self) -> bool:
        return not self.target.startswith("#")


@dataclass(frozen=True)
class Opened:
    """A decrypted message: its text and, where the cipher authenticates
    one, the sender's own timestamp (ms since the epoch)."""

    text: str
    sent_ms: int | None = None
    #: aes3: the public keys whose signature checked (the session decides,
    #: from its known keys, whether they are the sender's); None: unsigned
    signer: object = None
    #: aes3: keyed for the two identities only (a private message)
    private: bool = False


class DecryptError(Exception):
    """
    A payload could not be turned back into text.  ``code`` says why, for
    decisions (docs/trust.md, *Reason codes*); the message says it for
    people and is never read by code.  ``signer``: the keys whose signature
    did verify before it failed (aes3), else None.
    """

    def __init__(self, text: str, code: str = "damaged", signer: object = None) -> None:
        super().__init__(text)
        self.code = code
        self.signer = signer


class Cipher(Protocol):
    #: Scheme tag written before the colon in every payload.
    scheme: str
    #: Whether the cipher actually protects anything (for a warning).
    secure: bool

    def encrypt(self, text: str, context: Context) -> str: ...

    def decrypt(self, payload: str, context: Context) -> str: ...

    def open(self, payload: str, context: Context) -> "Opened":
        """decrypt, with the sender's authenticated timestamp if any."""


def split_scheme(payload: str) -> tuple[str, str]:
    """Split ``scheme:body``; raises DecryptError if there is no tag."""
    scheme, sep, body = payload.partition(":")
    if not sep or not scheme or len(scheme) > 16:
        raise DecryptError("not a chatsvc payload (no scheme tag)", "not-chatsvc")
    return scheme, body


def _caesar_table(shift: int) -> dict[int, str]:
    # Only ASCII letters move.  The original client also shifted letters
    # like "í" out of the alphabet into ASCII and could not restore them;
    # leaving every other character alone makes decrypt(encrypt(x)) == x.
    lower, upper = string.ascii_lowercase, string.ascii_uppercase
    s = shift % 26
    return str.maketrans(lower + upper, lower[s:] + lower[:s] + upper[s:] + upper[:s])


class CaesarCipher:
    """
    The original chatsvc cipher: each ASCII letter moves ``shift`` places
    along the alphabet, case kept.  It hides nothing from anyone who tries;
    it is here for teaching and for compatibility.
    """

    scheme = "caesar"
    secure = False

    def __init__(self, shift: int = 10) -> None:
        self.shift = shift
        self._encode = _caesar_table(shift)
        self._decode = _caesar_table(-shift)

    def encrypt(self, text: str, context: Context) -> str:
        return f"{self.scheme}:{text.translate(self._encode)}"

    def decrypt(self, payload: str, context: Context) -> str:
        scheme, body = split_scheme(payload)
        if scheme != self.scheme:
            raise DecryptError(f"sent with cipher '{scheme}', but this client uses '{self.scheme}'", "unknown-scheme")
        return body.translate(self._decode)

    def open(self, payload: str, context: Context) -> Opened:
        return Opened(self.decrypt(payload, context), None)  # no time: nothing is authenticated

