"""
Sealed rooms, the formats: a room's secret per epoch and what is derived
from it, the signed membership statement, the boxes that hand a secret to
each member, the control message that carries them, and invitation links.

Pure (no I/O, no clock): ``docs/encryption.md``, *Sealed rooms*, specifies
every byte, ``docs/vectors/sealed.json`` holds the cases, and
``chatsvc/web/sealed.js`` is the twin.  What a client *believes* of a
control message is ``membership.py``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from dataclasses import dataclass
from typing import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from chatsvc.client.identity import Identity, PublicKeys, verify

#: The text of an aes3 message that carries a statement (and boxes).
MARKER = "\x1fchatsvc-seal:"
#: The text a client posts once in a sealed room it joined by link (its signature shows its keys).
HELLO = "\x1fchatsvc-seal-hello"
VERSION = 1
MASTER_INFO = "chatsvc/sealed/v1/master "
CHECK_INFO = "chatsvc/sealed/v1/check "
BOX_INFO = "chatsvc/sealed/v1/box "
SIG_LABEL = b"chatsvc/sealed/v1/statement"
LINK_KEY = "join="
SECRET_SIZE = 32
#: A control message is at most this long (a statement of about 200 members fits in the line limit's reach).
MAX_CONTROL_CHARS = 60000
#: ... and a client sends at most this much (once encrypted it stays within the relay's 64 KiB line):
#: about 150 members with their boxes
MAX_SENT_CONTROL_CHARS = 45000


def fits(text: str) -> bool:
    """Whether a control message may be sent (a re-key that cannot go must not be half done)."""
    return len(text) <= MAX_SENT_CONTROL_CHARS


class SealError(Exception):
    """Something sealed that cannot be used; ``code`` says why (never read the text)."""

    def __init__(self, text: str, code: str) -> None:
        super().__init__(text)
        self.code = code


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(text: object, size: int | None = None) -> bytes:
    """base64url without padding; ``size``: the exact length wanted."""
    if not isinstance(text, str) or not re.fullmatch(r"[A-Za-z0-9_-]*", text) or len(text) % 4 == 1:
        raise SealError("not base64url", "malformed")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise SealError("not base64url", "malformed")
    if size is not None and len(data) != size:
        raise SealError(f"{len(data)} bytes where {size} belong", "malformed")
    return data


def _hkdf(ikm: bytes, info: str, size: int = 32) -> bytes:
    return HKDF(hashes.SHA256(), size, salt=None, info=info.encode("utf-8")).derive(ikm)


def room_master(secret: bytes, room: str, epoch: int) -> bytes:
    """What replaces the passphrase's master key for this room in this epoch (keys, join proof, files)."""
    return _hkdf(secret, f"{MASTER_INFO}{room.casefold()} {epoch}")


def secret_check(secret: bytes, room: str, epoch: int) -> str:
    """In the statement: lets a member see that a secret handed over is the one the owner signed."""
    return b64(_hkdf(secret, f"{CHECK_INFO}{room.casefold()} {epoch}", 16))


def canonical(value: object) -> bytes:
    """The bytes that are signed and hashed: JSON, keys sorted, no spaces, ASCII only (\\uXXXX escapes)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def statement_hash(statement: dict) -> bytes:
    return hashlib.sha256(canonical(statement)).digest()


# --- statements ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Member:
    nick: str
    keys: PublicKeys

    @property
    def sign(self) -> str:
        return b64(self.keys.sign)


def make_statement(room: str, epoch: int, serial: int, members: list[Member], owners: list[bytes],
                   secret: bytes, by: bytes) -> dict:
    """A statement (unsigned): members sorted by signing key, owners by key, room case-folded."""
    return {
        "v": VERSION,
        "room": room.casefold(),
        "epoch": epoch,
        "serial": serial,
        "members": [{"nick": m.nick, "sign": b64(m.keys.sign), "agree": b64(m.keys.agree)}
                    for m in sorted(members, key=lambda m: m.keys.sign)],
        "owners": sorted(b64(o) for o in owners),
        "check": secret_check(secret, room, epoch),
        "by": b64(by),
    }


def members_of(statement: dict) -> list[Member]:
    return [Member(m["nick"], PublicKeys(unb64(m["sign"], 32), unb64(m["agree"], 32))) for m in statement["members"]]


def member_by_sign(statement: dict, sign: bytes) -> Member | None:
    return next((m for m in members_of(statement) if m.keys.sign == sign), None)


def is_owner(statement: dict, sign: bytes) -> bool:
    return b64(sign) in statement["owners"]


def check_statement(statement: object) -> dict:
    """The shape every statement must have, or SealError("malformed")."""
    fields = {"v": int, "room": str, "epoch": int, "serial": int, "members": list, "owners": list,
              "check": str, "by": str}
    if not isinstance(statement, dict) or set(statement) != set(fields):
        raise SealError("a statement with other fields", "malformed")
    for name, kind in fields.items():
        if not isinstance(statement[name], kind) or (kind is int and isinstance(statement[name], bool)):
            raise SealError(f"statement field {name} is not a {kind.__name__}", "malformed")
    if statement["v"] != VERSION or statement["epoch"] < 1 or statement["serial"] < 1:
        raise SealError("statement version, epoch or serial out of range", "malformed")
    for m in statement["members"]:
        if not isinstance(m, dict) or set(m) != {"nick", "sign", "agree"} or not isinstance(m["nick"], str):
            raise SealError("a member entry of another shape", "malformed")
        unb64(m["sign"], 32), unb64(m["agree"], 32)
    for owner in statement["owners"]:
        unb64(owner, 32)
    unb64(statement["by"], 32)
    unb64(statement["check"], 16)
    signs = {m["sign"] for m in statement["members"]}
    if not set(statement["owners"]) <= signs:
        raise SealError("an owner who is not a member", "malformed")
    return statement


def sign_statement(identity: Identity, statement: dict) -> str:
    return b64(identity.signature(SIG_LABEL + canonical(statement)))


def statement_verifies(statement: dict, signature: str) -> bool:
    """Signed by the key in its ``by`` field (whether that key may sign is ``membership.judge``'s)."""
    try:
        by, sig = unb64(statement["by"], 32), unb64(signature, 64)
    except SealError:
        return False
    return verify(PublicKeys(by, bytes(32)), sig, SIG_LABEL + canonical(statement))


# --- boxes: the secret, to each member -------------------------------------------------------

def _box_aead(shared: bytes, statement: dict, member_sign: str) -> AESGCM:
    return AESGCM(_hkdf(shared, f"{BOX_INFO}{statement['room']} {statement['epoch']} {member_sign}"))


def seal_box(identity: Identity, member: Member, statement: dict, secret: bytes,
             random: Callable[[int], bytes] = os.urandom) -> str:
    """The secret for one member: only they (and the signer) can open it, bound to this statement."""
    nonce = random(12)
    try:
        shared = identity.shared_secret(member.keys.agree)
    except ValueError:  # a key that is no X25519 point: nothing can be sealed to it
        raise SealError(f"{member.nick}'s key cannot receive a box", "bad-key")
    aead = _box_aead(shared, statement, member.sign)
    return b64(nonce + aead.encrypt(nonce, secret, statement_hash(statement)))


def open_box(identity: Identity, signer_agree: bytes, statement: dict, box: str) -> bytes | None:
    """The secret in our box (None: it does not open, or is not a secret's size)."""
    try:
        data = unb64(box)
        aead = _box_aead(identity.shared_secret(signer_agree), statement, b64(identity.public.sign))
        secret = aead.decrypt(data[:12], data[12:], statement_hash(statement)) if len(data) > 28 else None
    except (SealError, InvalidTag, ValueError):
        return None
    return secret if secret is not None and len(secret) == SECRET_SIZE else None


# --- control messages ----------------------------------------------------------------------

def control_text(statement: dict, signature: str, boxes: dict[str, str] | None = None) -> str:
    body = {"statement": statement, "sig": signature}
    if boxes:
        body["boxes"] = boxes
    return MARKER + canonical(body).decode("ascii")


def parse_control(text: str) -> tuple[dict, str, dict[str, str]]:
    """statement, signature, boxes (member's signing key -> box); SealError("malformed") otherwise."""
    if not text.startswith(MARKER) or len(text) > MAX_CONTROL_CHARS:
        raise SealError("not a sealed-room message", "malformed")
    try:
        body = json.loads(text[len(MARKER):])
    except (ValueError, RecursionError):
        raise SealError("not JSON", "malformed")
    if not isinstance(body, dict) or not {"statement", "sig"} <= set(body) <= {"statement", "sig", "boxes"}:
        raise SealError("a control message of another shape", "malformed")
    boxes = body.get("boxes", {})
    if not isinstance(body["sig"], str) or not isinstance(boxes, dict) \
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in boxes.items()):
        raise SealError("a control message of another shape", "malformed")
    return check_statement(body["statement"]), body["sig"], boxes


# --- links -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Link:
    room: str
    epoch: int
    secret: bytes
    owner: bytes  # the owner's Ed25519 key: the only signer trusted until a statement arrives
    chat: str  # host:port of the relay's chat door
    owner_agree: bytes = bytes(32)  # the owner's X25519 key: with ``owner``, the fingerprint shown before joining


def make_link(link: Link, page: str | None = None) -> str:
    """``chatsvc://host:port/#join=…``, or the page's address with the same fragment."""
    body = {"v": VERSION, "room": link.room, "epoch": link.epoch, "secret": b64(link.secret),
            "owner": b64(link.owner), "agree": b64(link.owner_agree), "chat": link.chat}
    fragment = LINK_KEY + b64(canonical(body))
    return f"{page.rstrip('/')}/#{fragment}" if page else f"chatsvc://{link.chat}/#{fragment}"


def page_address(announced: str, server: str) -> str | None:
    """
    Where the relay serves the page, from CAPS ``page=``: an origin as is, or
    ``scheme:port`` on the host the client dialled (``server``, host:port).
    """
    if re.fullmatch(r"https?://[^/\s#?]+", announced):
        return announced + "/"
    found = re.fullmatch(r"(https?):(\d{1,5})", announced)
    if found is None:
        return None
    host = server.rpartition(":")[0] or server
    return f"{found.group(1)}://{host}:{found.group(2)}/"


def parse_link(text: str) -> Link:
    """A link (or its fragment alone); SealError("not-a-link" | "malformed") otherwise."""
    _, hash_, fragment = text.strip().partition("#")
    if not hash_ or not fragment.startswith(LINK_KEY):
        raise SealError("not an invitation link (it has no #join=… part)", "not-a-link")
    try:
        body = json.loads(unb64(fragment[len(LINK_KEY):]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError, SealError):
        raise SealError("the link's #join part is damaged (cut short or mistyped?): ask for it again", "malformed")
    kinds = {"v": int, "room": str, "epoch": int, "secret": str, "owner": str, "agree": str, "chat": str}
    if not isinstance(body, dict) or set(body) != set(kinds) \
            or not all(isinstance(body[k], t) and not isinstance(body[k], bool) for k, t in kinds.items()):
        raise SealError("the link's #join part is damaged", "malformed")
    if body["v"] != VERSION or body["epoch"] < 1 or not body["room"].startswith("#"):
        raise SealError("a link of another version", "malformed")
    return Link(body["room"], body["epoch"], unb64(body["secret"], SECRET_SIZE), unb64(body["owner"], 32), body["chat"],
                unb64(body["agree"], 32))
