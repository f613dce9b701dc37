"""
The keys pinned for others: ``known_keys`` beside the identity, like ssh's
``known_hosts`` (docs/trust.md).  The first keys seen under a nick are
pinned (trust on first use); later keys under that nick are *not* that
person until the user compares safety numbers and runs ``/verify``.

Nicks are kept case-folded, as the relay compares them, and indexed by
skeleton (Unicode TS #39, ``chatsvc/skeleton.py``) so that a new key under
a nick that only looks like a pinned one is flagged, not trusted.  Plain
Python, no Twisted; the page's ``pins.js`` has the same shape.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from chatsvc.client.identity import PublicKeys, _b64, _unb64
from chatsvc.client.inbound import Pins
from chatsvc.skeleton import skeleton

#: What L{KnownKeys.check} says of a signer.
NEW, PINNED, VERIFIED, CHANGED = "new", "pinned", "verified", "changed"


class KnownKeys:
    """Nick key -> (keys, verified), kept on disk as JSON."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else None
        self.pinned: dict[str, tuple[PublicKeys, bool]] = {}
        #: keys seen under a pinned nick that are not the pinned ones (until /verify)
        self.pending: dict[str, PublicKeys] = {}
        if self.path is not None and self.path.exists():
            try:
                data = json.loads(self.path.read_text())
                for nick, entry in data.items():
                    keys = PublicKeys(_unb64(entry["sign"]), _unb64(entry["agree"]))
                    self.pinned[nick] = (keys, bool(entry.get("verified")))
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                raise ValueError(f"{self.path} is damaged ({e}); move it away to start again")

    def view(self) -> Pins:
        """What the inbound policy's attribution reads (a snapshot)."""
        by_skeleton: dict[str, tuple] = {}
        for nick in sorted(self.pinned):
            shape = skeleton(nick)
            by_skeleton[shape] = by_skeleton.get(shape, ()) + (nick,)
        return Pins({nick: keys for nick, (keys, _) in self.pinned.items()}, skeleton, by_skeleton)

    def pin(self, nick_key: str, keys: PublicKeys, verified: bool = False) -> None:
        """First seen (or known under another nick): trusted from now on under this nick."""
        self.pinned[nick_key] = (keys, verified)
        self.save()

    def flag(self, nick_key: str, keys: PublicKeys) -> bool:
        """Other keys under a pinned nick, kept until /verify; True if these are new."""
        fresh = self.pending.get(nick_key) != keys
        self.pending[nick_key] = keys
        return fresh

    def check(self, nick_key: str, keys: PublicKeys) -> str:
        """NEW (now pinned), PINNED, VERIFIED, or CHANGED (not that person's)."""
        known = self.pinned.get(nick_key)
        if known is None:
            self.pin(nick_key, keys)
            return NEW
        if known[0] == keys:
            return VERIFIED if known[1] else PINNED
        self.pending[nick_key] = keys
        return CHANGED

    def keys_of(self, nick_key: str) -> PublicKeys | None:
        known = self.pinned.get(nick_key)
        return known[0] if known is not None else None

    def trusted_keys(self, nick_key: str) -> PublicKeys | None:
        """The pinned keys, unless other keys under the nick are in doubt."""
        return None if nick_key in self.pending else self.keys_of(nick_key)

    def is_verified(self, nick_key: str) -> bool:
        known = self.pinned.get(nick_key)
        return bool(known and known[1])

    def accept(self, nick_key: str, keys: PublicKeys) -> None:
        """The user compared safety numbers: these keys are that person's, verified."""
        self.pinned[nick_key] = (keys, True)
        self.pending.pop(nick_key, None)
        self.save()

    def save(self) -> None:
        if self.path is None:
            return
        data = {
            nick: {"sign": _b64(keys.sign), "agree": _b64(keys.agree), "verified": verified}
            for nick, (keys, verified) in self.pinned.items()
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".known_keys.")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, self.path)
