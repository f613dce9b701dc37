"""
End-to-end encryption with AES-256-GCM from a shared passphrase.

``docs/encryption.md`` specifies this scheme byte for byte (with test
vectors) and states its threat model; keep the two in step.  In short:

- passphrase --PBKDF2-HMAC-SHA256, 600,000 rounds, fixed versioned salt-->
  master key; master key --HKDF-SHA256, info naming the context--> one key
  per room and one per pair of nicks, so no two contexts share a key;
- each message: random 96-bit nonce, and associated data that binds the
  ciphertext to its context, its sender's nick, a random per-session sender
  id, a per-session counter and a timestamp;
- the receiver rebuilds the associated data from what the relay *claims*
  (room, sender), so a relay that moves, misattributes or alters a message
  makes decryption fail; counters and timestamps catch replays.

Only primitives that WebCrypto also offers are used (PBKDF2, HKDF, AES-GCM,
all with SHA-256), so a browser client can implement the same scheme.
"""

from __future__ import annotations

import base64
import os
import struct
import time
from collections import OrderedDict
from typing import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from chatsvc.client.ciphers import Context, DecryptError, split_scheme

SCHEME = "aes1"
VERSION = 1
PBKDF2_ITERATIONS = 600_000
#: Public and fixed, so that every member derives the same key from the same
#: passphrase with no exchange; versioned, so a later scheme gets fresh keys.
PBKDF2_SALT = b"chatsvc/e2e/v1/pbkdf2-salt"
AAD_LABEL = b"chatsvc/e2e/v1"
HKDF_INFO_PREFIX = b"chatsvc/e2e/v1/key "

# version (1) | sender id (8) | counter (8, big-endian) | timestamp ms (8) | nonce (12)
_HEADER = struct.Struct(">B8sQQ12s")
HEADER_SIZE = _HEADER.size  # 37
TAG_SIZE = 16

#: Messages older (or further in the future) than this are refused as stale.
DEFAULT_MAX_AGE = 10 * 60.0
#: How many sender sessions the replay guard remembers (oldest forgotten).
REPLAY_MEMORY = 10_000
#: Counters this far below a sender's highest are refused outright; those
#: within it are checked one by one (a message fetched from history may
#: arrive after newer ones).
REPLAY_WINDOW = 1024


def derive_master_key(passphrase: str) -> bytes:
    """The slow step (run it off the reactor thread): passphrase -> 32 bytes."""
    kdf = PBKDF2HMAC(hashes.SHA256(), 32, PBKDF2_SALT, PBKDF2_ITERATIONS)
    return kdf.derive(passphrase.encode("utf-8"))


def context_label(context: Context) -> bytes:
    """
    The name of the conversation a message belongs to, identical at both
    ends: ``room:<room>`` or ``dm:<nick> <nick>`` (the two nicks sorted), all
    case-folded as the relay compares names.
    """
    if context.is_private:
        pair = sorted((context.sender.casefold(), context.target.casefold()))
        return ("dm:" + " ".join(pair)).encode("utf-8")
    return ("room:" + context.target.casefold()).encode("utf-8")


def context_key(master: bytes, label: bytes) -> bytes:
    hkdf = HKDF(hashes.SHA256(), 32, salt=None, info=HKDF_INFO_PREFIX + label)
    return hkdf.derive(master)


def _field(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


def associated_data(label: bytes, sender: str, header: bytes) -> bytes:
    return AAD_LABEL + _field(label) + _field(sender.casefold().encode("utf-8")) + header


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    if not text or any(ch not in _B64URL for ch in text):
        raise DecryptError("damaged message (not base64url)")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        raise DecryptError("damaged message (not base64url)")


_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


class AesGcmCipher:
    """
    The default cipher.  One instance per client session: it holds the
    session's sender id and message counter, and remembers what it has seen
    from others to refuse replays.

    @param master_key: from L{derive_master_key}.
    @param now: clock in seconds (injectable for tests).
    @param random: source of random bytes (injectable for test vectors).
    """

    scheme = SCHEME
    secure = True

    def __init__(
        self,
        master_key: bytes,
        now: Callable[[], float] = time.time,
        random: Callable[[int], bytes] = os.urandom,
        max_age: float = DEFAULT_MAX_AGE,
    ) -> None:
        if len(master_key) != 32:
            raise ValueError("master key must be 32 bytes")
        self._master = master_key
        self._now = now
        self._random = random
        self.max_age = max_age
        self.sender_id = random(8)
        self._counter = 0
        self._keys: dict[bytes, AESGCM] = {}
        # (sender, sender id) -> [highest counter seen, bitmask of the
        # REPLAY_WINDOW counters below it that were seen], oldest first
        self._seen: OrderedDict[tuple[str, bytes], list[int]] = OrderedDict()

    @classmethod
    def from_passphrase(cls, passphrase: str, **kw) -> "AesGcmCipher":
        return cls(derive_master_key(passphrase), **kw)

    def _aead(self, label: bytes) -> AESGCM:
        aead = self._keys.get(label)
        if aead is None:
            aead = self._keys[label] = AESGCM(context_key(self._master, label))
        return aead

    def encrypt(self, text: str, context: Context) -> str:
        self._counter += 1
        label = context_label(context)
        header = _HEADER.pack(
            VERSION, self.sender_id, self._counter, int(self._now() * 1000), self._random(12)
        )
        nonce = header[-12:]
        sealed = self._aead(label).encrypt(
            nonce, text.encode("utf-8"), associated_data(label, context.sender, header)
        )
        return f"{SCHEME}:{_b64encode(header + sealed)}"

    def decrypt(self, payload: str, context: Context) -> str:
        scheme, body = split_scheme(payload)
        if scheme != SCHEME:
            raise DecryptError(f"sent with cipher '{scheme}', but this client uses '{SCHEME}'")
        envelope = _b64decode(body)
        if len(envelope) < HEADER_SIZE + TAG_SIZE:
            raise DecryptError("damaged message (too short)")
        header = envelope[:HEADER_SIZE]
        version, sender_id, counter, stamp_ms, nonce = _HEADER.unpack(header)
        if version != VERSION:
            raise DecryptError(f"envelope version {version} is not supported by this client")
        label = context_label(context)
        try:
            plain = self._aead(label).decrypt(
                nonce, envelope[HEADER_SIZE:], associated_data(label, context.sender, header)
            )
        except InvalidTag:
            raise DecryptError(
                "it does not authenticate: a different passphrase, or the message "
                "was altered, moved to another conversation or misattributed"
            )
        # Authentic from here on: the checks below are about *when*.  Live
        # messages must be fresh; history is old by nature.
        age = self._now() - stamp_ms / 1000
        if not context.history and abs(age) > self.max_age:
            direction = "old" if age > 0 else "in the future"
            raise DecryptError(f"stale message ({abs(age) / 60:.0f} minutes {direction}); possibly replayed")
        self._check_replay((context.sender.casefold(), sender_id), counter)
        while len(self._seen) > REPLAY_MEMORY:
            self._seen.popitem(last=False)
        try:
            return plain.decode("utf-8")
        except UnicodeDecodeError:
            raise DecryptError("message is not UTF-8 text")

    def _check_replay(self, key: tuple[str, bytes], counter: int) -> None:
        state = self._seen.get(key)
        if state is None:
            state = self._seen[key] = [counter, 1]
        else:
            highest, mask = state
            if counter > highest:
                state[0] = counter
                state[1] = ((mask << (counter - highest)) | 1) & ((1 << REPLAY_WINDOW) - 1)
            else:
                offset = highest - counter
                if offset >= REPLAY_WINDOW or mask >> offset & 1:
                    raise DecryptError("replayed message (already received)")
                state[1] = mask | 1 << offset
        self._seen.move_to_end(key)
