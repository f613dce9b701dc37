"""
Who you are, and whom you have met: per-user keys (docs/encryption.md,
*Scheme aes3*).

An L{Identity} is an Ed25519 signing key and an X25519 key, made on first
run and kept in ``identity`` in the config directory (mode 0600).  Every
message this client sends is signed with it, and carries both public keys;
private messages are keyed with X25519 between the two identities.

The keys pinned for others (``known_keys`` beside it) are in ``pins.py``.
Plain Python, no Twisted.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

FINGERPRINT_LABEL = b"chatsvc/e2e/v3/fingerprint"
SAFETY_LABEL = b"chatsvc/e2e/v3/safety"
_RAW = (serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class PublicKeys:
    """Someone's two public keys, 32 bytes each, as they travel in envelopes."""

    sign: bytes  # Ed25519
    agree: bytes  # X25519

    @property
    def fingerprint(self) -> str:
        return fingerprint(self)


def fingerprint(keys: PublicKeys) -> str:
    """
    16 bytes of SHA-256 over both keys, as eight groups of four hex digits:
    short enough to read aloud, long enough that nobody can make a
    key pair that matches someone else's.
    """
    digest = hashlib.sha256(FINGERPRINT_LABEL + keys.sign + keys.agree).hexdigest()[:32]
    return " ".join(digest[i : i + 4] for i in range(0, 32, 4))


def safety_number(a: PublicKeys, b: PublicKeys) -> str:
    """
    What two people compare out of band (read aloud, on a call): the same
    on both sides, whoever computes it.  Six groups of five digits, from
    SHA-256 over both parties' keys in a fixed order.
    """
    first, second = sorted((a.sign + a.agree, b.sign + b.agree))
    digest = hashlib.sha256(SAFETY_LABEL + first + second).digest()
    groups = [int.from_bytes(digest[i : i + 2], "big") for i in range(0, 12, 2)]
    return " ".join(f"{g:05d}" for g in groups)


class Identity:
    """This user's private keys."""

    def __init__(self, sign: Ed25519PrivateKey, agree: X25519PrivateKey, path: Path | None = None) -> None:
        self.sign_key = sign
        self.agree_key = agree
        self.path = path
        self.public = PublicKeys(sign.public_key().public_bytes(*_RAW), agree.public_key().public_bytes(*_RAW))

    @classmethod
    def generate(cls) -> "Identity":
        return cls(Ed25519PrivateKey.generate(), X25519PrivateKey.generate())

    @classmethod
    def from_seeds(cls, sign_seed: bytes, agree_seed: bytes) -> "Identity":
        """From the 32-byte private keys (test vectors)."""
        return cls(Ed25519PrivateKey.from_private_bytes(sign_seed), X25519PrivateKey.from_private_bytes(agree_seed))

    @classmethod
    def load_or_create(cls, path: Path) -> tuple["Identity", bool]:
        """The identity kept at ``path``, made there (mode 0600) if there is none; and whether it is new."""
        path = Path(path).expanduser()
        if path.exists():
            try:
                data = json.loads(path.read_text())
                made = cls.from_seeds(_unb64(data["sign"]), _unb64(data["agree"]))
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"{path} is not a chatsvc identity ({e}); move it away to make a new one")
            made.path = path
            return made, False
        made = cls.generate()
        made.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        seeds = {
            "sign": _b64(made.sign_key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                                     serialization.NoEncryption())),
            "agree": _b64(made.agree_key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                                       serialization.NoEncryption())),
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(seeds, f)
        return made, True

    def signature(self, data: bytes) -> bytes:
        return self.sign_key.sign(data)

    def shared_secret(self, their_agree: bytes) -> bytes:
        return self.agree_key.exchange(X25519PublicKey.from_public_bytes(their_agree))


def verify(keys: PublicKeys, signature: bytes, data: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(keys.sign).verify(signature, data)
    except Exception:  # InvalidSignature, or a key that is not a point
        return False
    return True
