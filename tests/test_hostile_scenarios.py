"""
The hostile-relay scenarios of docs/vectors/hostile.json, played against
the terminal client's whole session (the test is the relay); the page
plays the same file in tests/js/hostile-scenarios.test.mjs.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from chatsvc.client.aesgcm import AesGcmCipher
from chatsvc.client.ciphers import Context
from chatsvc.client.identity import Identity, PublicKeys
from tests.test_client_attacks import MASTER, MASTER_V2, SALT, T0, Clock
from tests.test_client_attacks import Session as AttackSession

DOC = json.loads((Path(__file__).resolve().parent.parent / "docs" / "vectors" / "hostile.json").read_text(encoding="utf-8"))
OTHER_MASTER = bytes(range(64, 96))  # another passphrase's key


def identity(name: str | None) -> Identity | None:
    if name is None:
        return None
    data = DOC["identities"][name]
    return Identity.from_seeds(bytes.fromhex(data["sign_seed"]), bytes.fromhex(data["agree_seed"]))


def public(name: str) -> PublicKeys:
    data = DOC["identities"][name]
    return PublicKeys(bytes.fromhex(data["sign"]), bytes.fromhex(data["agree"]))


def make_payload(spec: dict, sender: str, target: str) -> str:
    """A payload as the scenario's author (a member, an outsider, the relay's accomplice) seals it."""
    clock = Clock(T0 - 60 * spec.get("age_minutes", 0))
    cipher = AesGcmCipher(MASTER, now=clock, identity=identity(spec.get("by")))
    cipher.use_v2(OTHER_MASTER if spec.get("passphrase") == "other" else MASTER_V2, SALT)
    peer = spec.get("peer", "none")
    if peer == "identity":
        cipher.peer_agree = lambda nick: public("alice").agree
    elif peer == "random":
        stranger = X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        cipher.peer_agree = lambda nick: stranger
    context = Context(target=spec.get("for", target), sender=spec.get("as", sender))
    if cipher.identity is None:
        return cipher.encrypt(spec["text"], context)
    return cipher.encrypt(spec["text"], context, use_session=False)


def keyed(line: str) -> dict:
    """A private line the client sent: to whom, and what its envelope is keyed to."""
    _, to, payload = line.split(" ", 2)
    body = payload.split(":", 1)[1]
    peer = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))[-96:-64]
    agrees = {bytes.fromhex(data["agree"]) for data in DOC["identities"].values()}
    return {"to": to, "keyed": "passphrase" if peer == bytes(32) else "identity" if peer in agrees else "session"}


def signed_in(scenario: dict) -> AttackSession:
    s = AttackSession("alice", identity=identity("alice"))
    for nick, who in scenario.get("pins", {}).items():
        s.session.trust.known.pin(nick, public(who))
    s.server("HELLO chatsvc 1 test", f"CAPS join-proof topic max-line=65536 salt={SALT}", "OK NICK alice")
    s.server("JOIN #lobby alice", "NAMES #lobby alice bob", "ENDNAMES #lobby")
    if not scenario.get("history_open"):
        s.server("ENDHISTORY #lobby complete")
    s.sent()
    s.display.take()
    return s


@pytest.mark.parametrize("scenario", DOC["scenarios"], ids=lambda s: s["name"])
def test_hostile_scenario(scenario):
    s = signed_in(scenario)
    decisions = []
    s.session.on_decision = lambda stage, d: decisions.append([stage, d.action] + ([d.reason] if d.reason else []))
    payload = None
    for step in scenario["steps"]:
        words = step["line"].split(" ")
        if step["payload"] != "again":
            sender, target = (words[1], words[2]) if words[0] == "MSG" else (words[2], words[1])
            payload = make_payload(step["payload"], sender, target)
        tags = ";".join(f"{k}={v}" if v else k for k, v in step.get("tags", {}).items())
        s.server((f"@{tags} " if tags else "") + f"{step['line']} {payload}")
    expect = scenario["expect"]
    assert decisions == expect["decisions"]
    sent = [keyed(line) for line in s.sent() if line.startswith("MSG ")]
    assert sent == expect["sent"]
    shown = s.display.take()
    for text in expect.get("shown", []):
        assert any(text in line and not line.startswith(("! ", "* ")) for line in shown), (text, shown)
    for text in expect.get("hidden", []):
        assert not any(text in line for line in shown), (text, shown)
