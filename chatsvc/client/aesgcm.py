"""
End-to-end encryption with AES-256-GCM from a shared passphrase.

``docs/encryption.md`` specifies the schemes byte for byte (with test
vectors) and states their threat model; keep the two in step.  In short:

- ``aes2`` (the default with a relay that announces a salt): passphrase
  (NFC) --PBKDF2-HMAC-SHA256, 600,000 rounds, salted with the relay's
  per-deployment salt--> master key; ``aes1`` (older relays, and reading
  old history): the same with a fixed public salt;
- master key --HKDF-SHA256, info naming the context--> one key per room
  and one per pair of nicks, and (aes2) a join proof per room that the
  relay checks, so outsiders without the passphrase get no ciphertext;
- each message: random 96-bit nonce, and associated data that binds the
  ciphertext to its context, its sender's nick, a random per-session sender
  id, a per-session counter and a timestamp;
- the receiver rebuilds the associated data from what the relay *claims*
  (room, sender), so a relay that moves, misattributes or alters a message
  makes decryption fail; counters (remembered across restarts) and
  timestamps catch replays.

Only primitives that WebCrypto also offers are used (PBKDF2, HKDF, AES-GCM,
all with SHA-256), so a browser client can implement the same scheme.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
import time
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from chatsvc.client.ciphers import Context, DecryptError, Opened, split_scheme
from chatsvc.client.identity import Identity, PublicKeys, verify
from chatsvc.client.replay import Replayed, ReplayGuard


@dataclass(frozen=True)
class Scheme:
    name: str  # the payload's tag
    version: int  # the envelope's first byte
    aad_label: bytes
    info_prefix: bytes  # HKDF info for message keys, before the label


AES1 = Scheme("aes1", 1, b"chatsvc/e2e/v1", b"chatsvc/e2e/v1/key ")
AES2 = Scheme("aes2", 2, b"chatsvc/e2e/v2", b"chatsvc/e2e/v2/key ")
#: aes2, signed with the sender's identity key; private messages keyed with
#: X25519 between the two identities too (docs/encryption.md, aes3)
AES3 = Scheme("aes3", 3, b"chatsvc/e2e/v3", b"chatsvc/e2e/v3/key ")
SCHEMES = {s.name: s for s in (AES1, AES2, AES3)}
SIG_LABEL = b"chatsvc/e2e/v3/sig"
DM_INFO_PREFIX = b"chatsvc/e2e/v3/dm "
#: a private message keyed to both parties' session keys as well
SESSION_INFO_PREFIX = b"chatsvc/e2e/v3/dm-session "
FILE_DM_INFO_PREFIX = b"chatsvc/e2e/v3/file "
#: aes3's tail: sender's Ed25519 key, sender's X25519 key, the X25519 key a
#: private message was keyed for (zeros: none), then the signature.
KEYS_SIZE = 96
SIG_SIZE = 64
NO_PEER = bytes(32)

SCHEME = AES1.name  # kept for callers of the first version
VERSION = AES1.version
PBKDF2_ITERATIONS = 600_000
#: aes1: public and fixed, so that every member derives the same key from
#: the same passphrase with no exchange -- and so one table of guesses
#: serves every deployment, which is why aes2 salts per deployment.
PBKDF2_SALT = b"chatsvc/e2e/v1/pbkdf2-salt"
#: aes2: this, then the relay's salt (CAPS salt=...).
PBKDF2_SALT_V2_PREFIX = b"chatsvc/e2e/v2/salt "
JOIN_INFO_PREFIX = b"chatsvc/e2e/v2/join "
FILE_INFO_PREFIX = b"chatsvc/e2e/v2/file "
AAD_LABEL = AES1.aad_label
HKDF_INFO_PREFIX = AES1.info_prefix
#: Context keys kept ready at once (labels come from the relay's lines, so
#: the cache must not grow with whatever names it invents).
KEY_CACHE = 256

# version (1) | sender id (8) | counter (8, big-endian) | timestamp ms (8) | nonce (12)
_HEADER = struct.Struct(">B8sQQ12s")
HEADER_SIZE = _HEADER.size  # 37
TAG_SIZE = 16

#: Messages older (or further in the future) than this are refused as stale.
DEFAULT_MAX_AGE = 10 * 60.0


def _pbkdf2(secret: bytes, salt: bytes) -> bytes:
    """
    PBKDF2-HMAC-SHA256, 600,000 rounds: about 0.4 s of CPU.  The test suite
    starts some hundred clients, all with one passphrase; it points
    ``CHATSVC_TEST_KDF_CACHE`` at a folder of its own to derive each key
    once (tests/support.py).  Nothing else sets it: a client never keeps a
    derived key on disk.
    """
    cache = os.environ.get("CHATSVC_TEST_KDF_CACHE")
    path = None
    if cache:
        path = os.path.join(cache, hashlib.sha256(secret + b"\0" + salt).hexdigest())
        try:
            with open(path, "rb") as f:
                known = f.read()
            if len(known) == 32:
                return known
        except OSError:
            pass
    key = PBKDF2HMAC(hashes.SHA256(), 32, salt, PBKDF2_ITERATIONS).derive(secret)
    if path:
        with open(path + f".{os.getpid()}", "wb") as f:
            f.write(key)
        os.replace(path + f".{os.getpid()}", path)
    return key


def derive_master_key(passphrase: str) -> bytes:
    """aes1, the slow step (run it off the reactor thread): passphrase -> 32 bytes."""
    return _pbkdf2(passphrase.encode("utf-8"), PBKDF2_SALT)


def normalize_passphrase(passphrase: str) -> bytes:
    """NFC, so the same typed text gives the same bytes on every system."""
    return unicodedata.normalize("NFC", passphrase).encode("utf-8")


def derive_master_key_v2(passphrase: str, salt: str) -> bytes:
    """aes2, the slow step: (passphrase, the relay's salt) -> 32 bytes."""
    return _pbkdf2(normalize_passphrase(passphrase), PBKDF2_SALT_V2_PREFIX + salt.encode("ascii"))


def join_proof(master_v2: bytes, room: str) -> str:
    """
    What ``JOIN <room> <proof>`` carries: HKDF of the master key for this
    room.  The relay keeps members with different proofs apart, so only
    holders of the passphrase reach a room's members and history.
    """
    label = context_label(Context(target=room, sender=""))
    hkdf = HKDF(hashes.SHA256(), 32, salt=None, info=JOIN_INFO_PREFIX + label)
    return _b64encode(hkdf.derive(master_v2))


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


def context_key(master: bytes, label: bytes, scheme: Scheme = AES1) -> bytes:
    hkdf = HKDF(hashes.SHA256(), 32, salt=None, info=scheme.info_prefix + label)
    return hkdf.derive(master)


def _field(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


def associated_data(label: bytes, sender: str, header: bytes, scheme: Scheme = AES1) -> bytes:
    return scheme.aad_label + _field(label) + _field(sender.casefold().encode("utf-8")) + header


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    if not text or any(ch not in _B64URL for ch in text):
        raise DecryptError("damaged message (not base64url)", "damaged")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        raise DecryptError("damaged message (not base64url)", "damaged")


_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


class AesGcmCipher:
    """
    The default cipher.  One instance per client session: it holds the
    session's sender id and message counter, and remembers what it has seen
    from others to refuse replays.

    It sends ``aes1`` until L{use_v2} gives it the relay's salted key, then
    ``aes2``; it reads both (old history stays readable).

    @param master_key: from L{derive_master_key} (aes1).
    @param now: clock in seconds (injectable for tests).
    @param random: source of random bytes (injectable for test vectors).
    @param replay: what was seen, kept across restarts (default: in memory).
    @param passphrase: kept to derive the aes2 key once the relay's salt is
        known (L{derive_v2}); never sent, never written anywhere.
    """

    secure = True

    def __init__(
        self,
        master_key: bytes,
        now: Callable[[], float] = time.time,
        random: Callable[[int], bytes] = os.urandom,
        max_age: float = DEFAULT_MAX_AGE,
        replay: ReplayGuard | None = None,
        passphrase: str | None = None,
        identity: Identity | None = None,
        session_key: X25519PrivateKey | None = None,
    ) -> None:
        if len(master_key) != 32:
            raise ValueError("master key must be 32 bytes")
        self._masters: dict[Scheme, bytes] = {AES1: master_key}
        self._sending = AES1
        self.salt: str | None = None
        self._passphrase = passphrase
        self._now = now
        self._random = random
        self.max_age = max_age
        self.sender_id = random(8)
        self._counter = 0
        self._keys: OrderedDict[tuple[Scheme, bytes], AESGCM] = OrderedDict()
        self.replay = replay if replay is not None else ReplayGuard()
        #: this user's keys: with them (and the relay's salt), it sends aes3
        self.identity = identity
        #: nick -> the X25519 key to key a private message to them with
        #: (the session answers from its known keys; None: not known yet)
        self.peer_agree: Callable[[str], bytes | None] = lambda nick: None
        #: this run's X25519 key (forward secrecy per session): never stored,
        #: announced signed in key requests and answers; gone when it quits
        self.session_key = session_key or (X25519PrivateKey.generate() if identity is not None else None)
        self.session_public = (
            self.session_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw) if self.session_key else None
        )
        #: nick -> their current session's X25519 key, as they announced it
        self.peer_session: Callable[[str], bytes | None] = lambda nick: None
        self._pairwise: OrderedDict[tuple, AESGCM] = OrderedDict()
        #: room -> the master key of the sealed room of that name this client
        #: is in (its epoch's), or None for an ordinary room (sealing.py)
        self.room_master: Callable[[str], bytes | None] = lambda room: None
        #: in by invitation link alone, without the server's passphrase: only sealed rooms are readable
        self.link_only = False

    @property
    def scheme(self) -> str:
        return self._sending.name

    # --- aes2 ------------------------------------------------------------------

    def derive_v2(self, salt: str) -> bytes | None:
        """The slow step for aes2 (run it off the reactor thread); None without a passphrase."""
        if self._passphrase is None:
            return None
        return derive_master_key_v2(self._passphrase, salt)

    def use_v2(self, master_v2: bytes | None, salt: str) -> None:
        """Send aes2 (aes3 with an identity) from now on, keyed for this relay's salt."""
        if master_v2 is None and self.link_only:  # no passphrase: sealed rooms only
            self.salt, self._sending = salt, AES3
            return
        if len(master_v2) != 32:
            raise ValueError("master key must be 32 bytes")
        if self.salt != salt:
            # another relay (or one that forgot its salt): every key of the old master goes
            for key in [k for k in self._keys if k[0] is not AES1]:
                del self._keys[key]
            self._pairwise.clear()
        self._masters[AES2] = master_v2
        self._masters[AES3] = master_v2  # the same master; other keys by their HKDF info
        self.salt = salt
        self._sending = AES3 if self.identity is not None else AES2

    def file_key(self, context: Context, transfer_id: str, peer: str | None = None) -> bytes | None:
        """
        The key of one file transfer's stream frames (aes2 only; None
        before the relay's salt is known): HKDF of the master key, bound to
        the conversation the file was offered in and to the transfer.  A
        file sent privately to ``peer`` whose X25519 key is known (aes3)
        also takes the two identities' shared secret: only the two can
        read it, even with the relay's help.
        """
        master = self._masters.get(AES2) if context.is_private else self._room_or(AES2, context.target)
        if master is None:
            return None
        info = FILE_INFO_PREFIX + context_label(context) + b" " + transfer_id.encode("ascii")
        their = self.peer_agree(peer) if peer is not None and self.identity is not None else None
        if context.is_private and their is not None:
            ikm = master + self.identity.shared_secret(their)
            return HKDF(hashes.SHA256(), 32, salt=None, info=FILE_DM_INFO_PREFIX + info).derive(ikm)
        return HKDF(hashes.SHA256(), 32, salt=None, info=info).derive(master)

    def join_proof(self, room: str) -> str | None:
        master = self._room_or(AES2, room)
        return join_proof(master, room) if master is not None else None

    def _room_or(self, scheme: Scheme, room: str) -> bytes | None:
        """A room's master: its sealed room's, else the passphrase's (None: neither)."""
        sealed = self.room_master(room)
        return sealed if sealed is not None else self._masters.get(scheme)

    def _master(self, scheme: Scheme, context: Context) -> bytes:
        """The master key a message in this context is keyed with, or DecryptError."""
        sealed = None if context.is_private else self.room_master(context.target)
        if sealed is not None:
            if scheme is not AES3:
                raise DecryptError(f"sent with {scheme.name} in a sealed room (only signed aes3 belongs there)",
                                   "not-authentic")
            return sealed
        master = self._masters.get(scheme)
        if master is None:
            raise DecryptError("sent with the server's passphrase, which this client (in by invitation link "
                               "alone) does not have" if self.link_only else
                               f"sent with {scheme.name}, but this client has no {scheme.name} key for this server",
                               "no-key")
        return master

    # --- messages ------------------------------------------------------------------

    def _aead(self, scheme: Scheme, label: bytes, master: bytes) -> AESGCM:
        key = (scheme, label, master)
        aead = self._keys.get(key)
        if aead is None:
            aead = self._keys[key] = AESGCM(context_key(master, label, scheme))
            while len(self._keys) > KEY_CACHE:
                self._keys.popitem(last=False)
        else:
            self._keys.move_to_end(key)
        return aead

    def _pairwise_aead(self, label: bytes, their_agree: bytes, their_session: bytes | None = None) -> AESGCM:
        """
        aes3, a private message keyed for the two identities: HKDF over the
        X25519 shared secret and the passphrase's key for the pair, so it
        takes both the other's private key and the passphrase to read.  With
        both parties' session keys (``their_session``), their shared secret
        too: once the two sessions end, their keys are gone, and a stolen
        identity file no longer opens what was recorded (forward secrecy per
        session).
        """
        cache_key = (label, their_agree, their_session)
        aead = self._pairwise.get(cache_key)
        if aead is None:
            ikm = self.identity.shared_secret(their_agree)
            info = DM_INFO_PREFIX + label
            if their_session is not None:
                ikm += self.session_key.exchange(X25519PublicKey.from_public_bytes(their_session))
                info = SESSION_INFO_PREFIX + label
            if AES3 not in self._masters:
                raise DecryptError("private messages are keyed with the server's passphrase, which this client "
                                   "(in by invitation link alone) does not have", "no-key")
            ikm += context_key(self._masters[AES3], label, AES3)
            aead = AESGCM(HKDF(hashes.SHA256(), 32, salt=None, info=info).derive(ikm))
            self._pairwise[cache_key] = aead
            while len(self._pairwise) > KEY_CACHE:
                self._pairwise.popitem(last=False)
        return aead

    def encrypt(self, text: str, context: Context, use_session: bool = True) -> str:
        """
        ``use_session``: key a private message to both sessions if their key
        is known; False for the messages that announce session keys (the
        other side cannot have ours before it reads them).
        """
        scheme = self._sending
        self._counter += 1
        label = context_label(context)
        header = _HEADER.pack(
            scheme.version, self.sender_id, self._counter, int(self._now() * 1000), self._random(12)
        )
        nonce = header[-12:]
        aad = associated_data(label, context.sender, header, scheme)
        if scheme is not AES3:
            sealed = self._aead(scheme, label, self._master(scheme, context)).encrypt(nonce, text.encode("utf-8"), aad)
            return f"{scheme.name}:{_b64encode(header + sealed)}"
        their = self.peer_agree(context.target) if context.is_private else None
        session = self.peer_session(context.target) if their is not None and use_session else None
        mine = self.identity.public
        # peer: whose key it is keyed for -- their session key, else their identity's
        keys = mine.sign + mine.agree + (session or their or NO_PEER)
        aad += keys
        aead = self._pairwise_aead(label, their, session) if their else self._aead(scheme, label, self._master(scheme, context))
        sealed = aead.encrypt(nonce, text.encode("utf-8"), aad)
        signature = self.identity.signature(SIG_LABEL + aad + sealed)
        return f"{scheme.name}:{_b64encode(header + sealed + keys + signature)}"

    def private_to(self, nick: str) -> bool:
        """Whether a private message to ``nick`` would now be keyed for the two sessions only."""
        return self._sending is AES3 and self.peer_agree(nick) is not None and self.peer_session(nick) is not None

    def decrypt(self, payload: str, context: Context) -> str:
        return self.open(payload, context).text

    def open(self, payload: str, context: Context) -> Opened:
        """
        Decrypt and check; the result carries the sender's own timestamp
        (authenticated), which is what the client shows -- never the relay's.
        """
        scheme, header, sealed, keys, signature = self._split(payload)
        _, sender_id, counter, stamp_ms, nonce = _HEADER.unpack(header)
        label = context_label(context)
        aad = associated_data(label, context.sender, header, scheme)
        signer, private, aead = None, False, None
        if scheme is AES3:
            signer = PublicKeys(keys[:32], keys[32:64])
            aad += keys
            if not verify(signer, signature, SIG_LABEL + aad + sealed):
                raise DecryptError("its signature does not verify (altered, or not signed by the key it carries)", "bad-signature")
            aead = self._peer_aead(label, context, signer, keys[64:])
            private = aead is not None
        try:
            plain = (aead or self._aead(scheme, label, self._master(scheme, context))).decrypt(nonce, sealed, aad)
        except InvalidTag:
            raise DecryptError(
                "it does not authenticate: a different passphrase, or the message "
                "was altered, moved to another conversation or misattributed", "not-authentic", signer
            )
        self._check_when(context, sender_id, counter, stamp_ms, signer)
        try:
            return Opened(plain.decode("utf-8"), stamp_ms, signer, private)
        except UnicodeDecodeError:
            raise DecryptError("message is not UTF-8 text", "not-utf8", signer)

    def _split(self, payload: str) -> tuple[Scheme, bytes, bytes, bytes, bytes]:
        """scheme, header, ciphertext with tag, aes3's 96 key bytes and signature (empty before aes3)."""
        name, body = split_scheme(payload)
        scheme = SCHEMES.get(name)
        if scheme is None:
            raise DecryptError(f"sent with cipher '{name}', which this client does not know", "unknown-scheme")
        envelope = _b64decode(body)
        tail = KEYS_SIZE + SIG_SIZE if scheme is AES3 else 0
        if len(envelope) < HEADER_SIZE + TAG_SIZE + tail:
            raise DecryptError("damaged message (too short)", "damaged")
        if envelope[0] != scheme.version:
            raise DecryptError(f"envelope version {envelope[0]} does not belong to {name}", "wrong-version")
        end = len(envelope) - tail
        return scheme, envelope[:HEADER_SIZE], envelope[HEADER_SIZE:end], envelope[end:end + KEYS_SIZE], envelope[end + KEYS_SIZE:]

    def _peer_aead(self, label: bytes, context: Context, signer: PublicKeys, peer: bytes) -> AESGCM | None:
        """aes3: the pairwise key a ``peer`` names (None: no peer, the room/passphrase key)."""
        if peer == NO_PEER:
            return None
        if not context.is_private or self.identity is None:
            raise DecryptError("it is keyed for someone else's key, not yours", "wrong-peer", signer)
        if peer == self.identity.public.agree:
            return self._pairwise_aead(label, signer.agree)
        if peer == self.session_public:
            theirs = self.peer_session(context.sender)
            if theirs is None:
                raise DecryptError("it is keyed for a session of theirs this client has not seen announced",
                                   "unknown-session", signer)
            return self._pairwise_aead(label, signer.agree, theirs)
        raise DecryptError("it is keyed for someone else's key, or an earlier session of yours", "wrong-peer", signer)

    def _check_when(self, context: Context, sender_id: bytes, counter: int, stamp_ms: int, signer) -> None:
        # Authentic from here on: the checks are about *when*.  Live messages
        # must be fresh and new; history the client asked for is old by
        # nature (it is shown as such, with this timestamp).
        age = self._now() - stamp_ms / 1000
        if not context.history and abs(age) > self.max_age:
            direction = "old" if age > 0 else "in the future"
            raise DecryptError(f"stale message ({abs(age) / 60:.0f} minutes {direction}); possibly replayed", "stale", signer)
        try:
            self.replay.check(context.sender.casefold(), sender_id, counter, record_only=context.history)
        except Replayed:
            raise DecryptError("replayed message (already received)", "replayed", signer)
