"""
Writes docs/vectors/sealed.json: the sealed-room vectors both clients
check (derivations, canonical bytes, statements, boxes, links, and what
``judge`` decides).  Deterministic: fixed keys, fixed nonces.

    python tools/sealed_vectors.py            # rewrite the file
    python tools/sealed_vectors.py --check    # exit 1 if it would change
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
from pathlib import Path

from chatsvc.client import membership, sealed
from chatsvc.client.aesgcm import join_proof
from chatsvc.client.identity import Identity
from chatsvc.client.sealed import Link, Member, b64

OUT = Path(__file__).resolve().parent.parent / "docs" / "vectors" / "sealed.json"


def person(name: str) -> Identity:
    return Identity.from_seeds(hashlib.sha256(f"{name} sign".encode()).digest(),
                               hashlib.sha256(f"{name} agree".encode()).digest())


PEOPLE = {name: person(name) for name in ("alice", "bob", "carol", "dave")}
SECRET1 = bytes(range(32))
SECRET2 = bytes(range(100, 132))
NONCE = bytes(range(12))


def keys(name: str) -> dict:
    p = PEOPLE[name].public
    return {"sign": b64(p.sign), "agree": b64(p.agree)}


def statement(epoch: int, serial: int, members: list[str], owners: list[str], by: str,
              secret: bytes, room: str = "#Ops") -> tuple[dict, str]:
    made = sealed.make_statement(room, epoch, serial, [Member(n, PEOPLE[n].public) for n in members],
                                 [PEOPLE[o].public.sign for o in owners], secret, PEOPLE[by].public.sign)
    return made, sealed.sign_statement(PEOPLE[by], made)


def held(epoch: int, secrets: dict[int, bytes], stmt: tuple[dict, str] | None, listed: bool,
         link_owner: str | None = None) -> dict:
    return {"room": "#ops", "epoch": epoch, "secrets": {str(e): b64(s) for e, s in secrets.items()},
            "statement": stmt[0] if stmt else None, "signature": stmt[1] if stmt else None,
            "link_owner": b64(PEOPLE[link_owner].public.sign) if link_owner else None, "listed": listed}


def judge_cases() -> list[dict]:
    e1 = statement(1, 1, ["alice", "bob", "carol"], ["alice"], "alice", SECRET1)
    e1_dave = statement(1, 2, ["alice", "bob", "carol", "dave"], ["alice"], "alice", SECRET1)
    e2 = statement(2, 2, ["alice", "carol"], ["alice"], "alice", SECRET2)
    e2_bob = statement(2, 2, ["alice", "bob"], ["alice"], "alice", SECRET2)
    by_carol = statement(2, 2, ["alice", "carol"], ["alice", "carol"], "carol", SECRET2)
    no_bob = statement(1, 1, ["alice", "carol"], ["alice"], "alice", SECRET1)
    wrong_check = statement(1, 2, ["alice", "bob"], ["alice"], "alice", SECRET2)
    tampered = (dict(e1[0], serial=5), e1[1])
    at_bob = held(1, {1: SECRET1}, e1, True)
    cases = [
        ("an owner's invitation, with our box", None, e1, SECRET1, "alice", "private", "bob", "invited", "ok"),
        ("an invitation that does not list us", None, no_bob, SECRET1, "alice", "private", "bob", "refused", "not-member"),
        ("an invitation whose box holds another secret", None, e1, SECRET2, "alice", "private", "bob", "refused", "bad-secret"),
        ("an invitation without a box for us", None, e1, None, "alice", "private", "bob", "refused", "bad-secret"),
        ("an owner's statement handed over by a member who is not an owner", None, e1, SECRET1, "carol", "private", "bob",
         "refused", "not-owner"),
        ("a statement signed by a member who made herself owner, for a room we hold", at_bob, by_carol, SECRET2, "carol",
         "#ops", "bob", "refused", "not-owner"),
        ("a statement altered after signing", None, tampered, SECRET1, "alice", "private", "bob", "refused", "bad-signature"),
        ("a statement posted in a room we do not hold", None, e1, SECRET1, "alice", "#ops", "bob", "refused", "unasked"),
        ("a statement posted in another room", at_bob, e1_dave, None, "alice", "#dev", "bob", "refused", "wrong-room"),
        ("the relay replays epoch 1's invitation after epoch 2", held(2, {1: SECRET1, 2: SECRET2}, e2_bob, True), e1, SECRET1,
         "alice", "private", "bob", "refused", "stale"),
        ("the statement we hold, again", at_bob, e1, None, "alice", "#ops", "bob", "duplicate", "ok"),
        ("another statement under the serial we hold", at_bob, no_bob, None, "alice", "#ops", "bob", "refused", "stale"),
        ("an owner adds a member (same epoch)", at_bob, e1_dave, None, "alice", "#ops", "bob", "updated", "ok"),
        ("same epoch, but its check is not our secret's", at_bob, wrong_check, None, "alice", "#ops", "bob", "refused",
         "bad-secret"),
        ("a new epoch without us: we were removed", at_bob, e2, None, "alice", "#ops", "bob", "removed", "removed"),
        ("a new epoch with us and our box", at_bob, e2_bob, SECRET2, "alice", "#ops", "bob", "rekeyed", "ok"),
        ("a new epoch with us but no box", at_bob, e2_bob, None, "alice", "#ops", "bob", "refused", "bad-secret"),
        ("joined by link: the link's owner's statement, not listing us yet", held(1, {1: SECRET1}, None, False, "alice"),
         no_bob, None, "alice", "#ops", "bob", "updated", "ok"),
        ("joined by link: a statement by someone else", held(1, {1: SECRET1}, None, False, "alice"),
         statement(1, 1, ["carol"], ["carol"], "carol", SECRET1), None, "carol", "#ops", "bob", "refused", "not-owner"),
        ("joined by link: a new epoch without us (the link was revoked)", held(1, {1: SECRET1}, None, False, "alice"),
         e2, None, "alice", "#ops", "bob", "removed", "removed"),
    ]
    out = []
    for name, h, (stmt, sig), secret, carrier, where, me, kind, reason in cases:
        out.append({"name": name, "held": h, "statement": stmt, "signature": sig,
                    "secret": b64(secret) if secret else None, "carrier": keys(carrier), "where": where,
                    "me": keys(me), "expect": {"kind": kind, "reason": reason}})
    return out


def check_judge(cases: list[dict]) -> None:
    """The file is only written if Python decides every case as written."""
    from chatsvc.client.identity import PublicKeys
    from chatsvc.client.sealed import unb64

    for case in cases:
        h = case["held"]
        held_obj = None if h is None else membership.Held(
            h["room"], h["epoch"], {int(e): unb64(s) for e, s in h["secrets"].items()}, copy.deepcopy(h["statement"]),
            h["signature"], unb64(h["link_owner"]) if h["link_owner"] else None, h["listed"])
        pk = lambda d: PublicKeys(unb64(d["sign"]), unb64(d["agree"]))  # noqa: E731
        v = membership.judge(held_obj, case["statement"], case["signature"],
                             unb64(case["secret"]) if case["secret"] else None, pk(case["carrier"]), case["where"],
                             pk(case["me"]))
        assert (v.kind, v.reason) == (case["expect"]["kind"], case["expect"]["reason"]), (case["name"], v)


def vectors() -> dict:
    alice, bob = PEOPLE["alice"], PEOPLE["bob"]
    master = sealed.room_master(SECRET1, "#Ops", 1)
    e1, sig = statement(1, 1, ["alice", "bob"], ["alice"], "alice", SECRET1)
    box = sealed.seal_box(alice, Member("bob", bob.public), e1, SECRET1, random=lambda n: NONCE)
    link = Link("#ops", 1, SECRET1, alice.public.sign, "chat.example.org:8000", alice.public.agree)
    cases = judge_cases()
    check_judge(cases)
    return {
        "about": "Sealed rooms (docs/encryption.md, Sealed rooms). Keys: Ed25519/X25519 private keys are "
                 "SHA-256('<name> sign') and SHA-256('<name> agree'). Written by tools/sealed_vectors.py; "
                 "both clients' tests load this file.",
        "people": {name: {"sign_seed": hashlib.sha256(f"{name} sign".encode()).hexdigest(),
                          "agree_seed": hashlib.sha256(f"{name} agree".encode()).hexdigest(), **keys(name)}
                   for name in PEOPLE},
        "derive": [{"secret": SECRET1.hex(), "room": "#Ops", "epoch": 1, "master": master.hex(),
                    "check": sealed.secret_check(SECRET1, "#Ops", 1), "proof": join_proof(master, "#Ops")},
                   {"secret": SECRET2.hex(), "room": "#ops", "epoch": 2,
                    "master": sealed.room_master(SECRET2, "#ops", 2).hex(),
                    "check": sealed.secret_check(SECRET2, "#ops", 2),
                    "proof": join_proof(sealed.room_master(SECRET2, "#ops", 2), "#ops")}],
        "canonical": [{"value": {"b": [1, "é"], "a": "x\n\"y\"", "c": {"z": 0, "y": "\U0001F600"}},
                       "bytes": sealed.canonical({"b": [1, "é"], "a": "x\n\"y\"", "c": {"z": 0, "y": "\U0001F600"}}).decode()}],
        "statement": {"statement": e1, "signature": sig, "hash": sealed.statement_hash(e1).hex(),
                      "control": sealed.control_text(e1, sig, {b64(bob.public.sign): box})},
        "box": {"from": "alice", "to": "bob", "nonce": NONCE.hex(), "secret": SECRET1.hex(), "box": box},
        "link": {"link": {"room": link.room, "epoch": 1, "secret": SECRET1.hex(), "owner": b64(alice.public.sign),
                          "agree": b64(alice.public.agree), "chat": link.chat},
                 "chat": sealed.make_link(link), "page": sealed.make_link(link, "https://chat.example.org"),
                 "refused": [{"text": "https://chat.example.org/", "reason": "not-a-link"},
                             {"text": "https://chat.example.org/#join=%%%", "reason": "malformed"},
                             {"text": "#join=" + b64(b'{"v":1}'), "reason": "malformed"},
                             {"text": "#join=" + b64(sealed.canonical({"v": 1, "room": "#ops", "epoch": 1,
                                                                        "secret": b64(b"short"), "owner": b64(bytes(32)),
                                                                        "agree": b64(bytes(32)), "chat": "h:1"})),
                              "reason": "malformed"}]},
        "judge": cases,
    }


def main() -> int:
    text = json.dumps(vectors(), indent=1, ensure_ascii=False) + "\n"
    if "--check" in sys.argv:
        return 0 if OUT.read_text() == text else 1
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
