"""
Sealed rooms, the policy: what a client believes of a statement that
arrives (docs/encryption.md, *Sealed rooms*, *Accepting a statement*).

``judge`` is pure: it gets what the client holds for the room, the
statement (already parsed), the secret its box opened to (if any), who
carried it and where, and returns a verdict with a reason code.  The cases
are ``docs/vectors/sealed.json``; ``chatsvc/web/membership.js`` is the twin.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chatsvc.client.identity import PublicKeys
from chatsvc.client.sealed import b64, is_owner, secret_check, statement_hash, statement_verifies, unb64

#: Verdicts that change what is held.
INVITED, UPDATED, REKEYED, REMOVED = "invited", "updated", "rekeyed", "removed"
#: Verdicts that change nothing.
DUPLICATE, REFUSED = "duplicate", "refused"


@dataclass
class Held:
    """What a client holds for one sealed room."""

    room: str
    epoch: int
    secrets: dict[int, bytes] = field(default_factory=dict)  # every epoch's secret it received
    statement: dict | None = None  # the newest accepted (None: joined by link, none seen yet)
    signature: str | None = None
    link_owner: bytes | None = None  # joined by link: the one signer trusted until a statement arrives
    listed: bool = False  # named in an accepted statement at least once

    @property
    def serial(self) -> int:
        return self.statement["serial"] if self.statement else 0

    @property
    def secret(self) -> bytes:
        return self.secrets[self.epoch]

    def owners(self) -> list[bytes]:
        if self.statement is not None:
            return [unb64(o) for o in self.statement["owners"]]
        return [self.link_owner] if self.link_owner else []


@dataclass(frozen=True)
class Verdict:
    kind: str
    reason: str  # a reason code (docs/encryption.md): "ok" when accepted


def _listed(statement: dict, me: PublicKeys) -> bool:
    return any(m["sign"] == b64(me.sign) and m["agree"] == b64(me.agree) for m in statement["members"])


def judge(held: Held | None, statement: dict, signature: str, secret: bytes | None,
          carrier: PublicKeys, where: str, me: PublicKeys) -> Verdict:
    """
    ``where``: "private" (an invitation sent to us) or the case-folded room
    it was posted in.  ``secret``: what our box opened to (None: no box for
    us, or it did not open).  ``carrier``: the keys that signed the aes3
    message carrying it.
    """
    by = statement and statement.get("by")
    if not statement_verifies(statement, signature):
        return Verdict(REFUSED, "bad-signature")
    if not is_owner(statement, carrier.sign) or b64(carrier.sign) != by:
        return Verdict(REFUSED, "not-owner")
    if where != "private" and where != statement["room"]:
        return Verdict(REFUSED, "wrong-room")
    if held is None:
        return _invitation(statement, secret, where, me)
    if carrier.sign not in held.owners():
        return Verdict(REFUSED, "not-owner")
    if statement["epoch"] < held.epoch or statement["serial"] < held.serial:
        return Verdict(REFUSED, "stale")
    if statement["serial"] == held.serial:
        same = held.statement is not None and statement_hash(statement) == statement_hash(held.statement)
        return Verdict(DUPLICATE, "ok") if same else Verdict(REFUSED, "stale")
    listed = _listed(statement, me)
    if statement["epoch"] == held.epoch:
        if statement["check"] != secret_check(held.secret, held.room, held.epoch):
            return Verdict(REFUSED, "bad-secret")
        if held.listed and not listed:
            return Verdict(REMOVED, "removed")
        return Verdict(UPDATED, "ok")
    if not listed:
        return Verdict(REMOVED, "removed")
    if secret is None or statement["check"] != secret_check(secret, statement["room"], statement["epoch"]):
        return Verdict(REFUSED, "bad-secret")
    return Verdict(REKEYED, "ok")


def _invitation(statement: dict, secret: bytes | None, where: str, me: PublicKeys) -> Verdict:
    if where != "private":
        return Verdict(REFUSED, "unasked")
    if not _listed(statement, me):
        return Verdict(REFUSED, "not-member")
    if secret is None or statement["check"] != secret_check(secret, statement["room"], statement["epoch"]):
        return Verdict(REFUSED, "bad-secret")
    return Verdict(INVITED, "ok")


def accept(held: Held | None, verdict: Verdict, statement: dict, signature: str, secret: bytes | None,
           me: PublicKeys) -> Held | None:
    """What is held after an accepted verdict (None: removed, the room's secrets are kept elsewhere)."""
    if verdict.kind == INVITED:
        held = Held(statement["room"], statement["epoch"], {statement["epoch"]: secret})
    elif verdict.kind == REKEYED:
        held.secrets[statement["epoch"]] = secret
        held.epoch = statement["epoch"]
    elif verdict.kind != UPDATED:
        return held
    held.statement, held.signature = statement, signature
    held.listed = held.listed or _listed(statement, me)
    return held
