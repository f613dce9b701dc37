"""
docs/vectors/crypto.json -- the byte-exact vectors of docs/encryption.md --
against the terminal client's cipher and against an independent
implementation from raw primitives; tests/js/crypto-vectors.test.mjs runs
the same file against the page's.  And the prose and the file agree.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from pathlib import Path

import pytest

from chatsvc.client import aesgcm
from chatsvc.client.aesgcm import AesGcmCipher
from chatsvc.client.ciphers import Context, DecryptError
from chatsvc.client.identity import Identity, fingerprint, safety_number

DOCS = Path(__file__).resolve().parent.parent / "docs"
V = json.loads((DOCS / "vectors" / "crypto.json").read_text(encoding="utf-8"))
V1 = bytes.fromhex(V["master_aes1"])
V2 = bytes.fromhex(V["master_aes2"])


def identity(who: str) -> Identity:
    return Identity.from_seeds(bytes.fromhex(V["aes3"][who]["sign_seed"]), bytes.fromhex(V["aes3"][who]["agree_seed"]))


def vector_cipher(ident=None, peers=None, v2=True) -> AesGcmCipher:
    m = V["message"]
    randoms = iter([bytes.fromhex(m["sender_id"]), bytes.fromhex(m["nonce"])])
    c = AesGcmCipher(V1, now=lambda: m["timestamp_ms"] / 1000, random=lambda n: next(randoms), identity=ident)
    if v2:
        c.use_v2(V2, V["salt"])
    if peers:
        c.peer_agree = lambda nick: peers.get(nick.casefold())
    return c


def hkdf(ikm: bytes, info: bytes) -> bytes:
    prk = hmac.new(b"\0" * 32, ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


@pytest.mark.slow
def test_master_keys_from_the_passphrase():
    assert aesgcm.derive_master_key(V["passphrase"]) == V1
    assert aesgcm.derive_master_key_v2(V["passphrase"], V["salt"]) == V2
    nfc = V["nfc"]
    assert aesgcm.derive_master_key_v2(nfc["composed"], V["salt"]) == aesgcm.derive_master_key_v2(nfc["decomposed"], V["salt"])


def test_aes1():
    for kind in ("room", "private"):
        case = V["aes1"][kind]
        assert aesgcm.context_label(Context(case["target"], case["sender"])).decode() == case["label"]
        assert aesgcm.context_key(V1, case["label"].encode()).hex() == case["context_key"]
        assert vector_cipher(v2=False).encrypt(case["text"], Context(case["target"], case["sender"])) == case["payload"]
    room = V["aes1"]["room"]
    assert aesgcm.associated_data(room["label"].encode(), room["sender"], bytes.fromhex(room["header"])).hex() == room["aad"]


def test_aes2():
    assert aesgcm.join_proof(V2, V["aes2"]["join_proof"]["room"]) == V["aes2"]["join_proof"]["proof"]
    room = V["aes2"]["room"]
    assert vector_cipher().encrypt(room["text"], Context(room["target"], room["sender"])) == room["payload"]


def test_aes3():
    a3 = V["aes3"]
    alice, bob = identity("alice"), identity("bob")
    for who, ident in (("alice", alice), ("bob", bob)):
        assert (ident.public.sign.hex(), ident.public.agree.hex()) == (a3[who]["sign"], a3[who]["agree"])
        assert fingerprint(ident.public) == a3[who]["fingerprint"]
    assert safety_number(alice.public, bob.public) == safety_number(bob.public, alice.public) == a3["safety_number"]
    assert alice.shared_secret(bob.public.agree).hex() == a3["shared_secret"]
    room, dm = a3["room"], a3["private"]
    assert vector_cipher(alice).encrypt(room["text"], Context(room["target"], room["sender"])) == room["payload"]
    assert vector_cipher(alice, {"bob": bob.public.agree}).encrypt(dm["text"], Context(dm["target"], dm["sender"])) == dm["payload"]
    opened = vector_cipher(bob).open(dm["payload"], Context(dm["target"], dm["sender"], history=True))
    assert (opened.text, opened.private, opened.signer) == (dm["text"], True, alice.public)
    f = a3["private_file"]
    key = vector_cipher(alice, {"bob": bob.public.agree}).file_key(Context(f["target"], f["sender"]), f["transfer_id"], peer="bob")
    assert key.hex() == f["key"]


def test_aes3_from_raw_primitives():
    """The envelope split, the keys and the private file key from the document alone."""
    a3 = V["aes3"]
    body = a3["room"]["payload"].split(":", 1)[1]
    env = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    split = a3["room"]["split"]
    assert len(env) >= 37 + 16 + 160
    parts = (env[:37], env[37:-160], env[-160:-128], env[-128:-96], env[-96:-64], env[-64:])
    assert [p.hex() for p in parts] == [split[k] for k in ("header", "sealed", "sign", "agree", "peer", "signature")]
    assert hkdf(V2, b"chatsvc/e2e/v3/key room:#lobby").hex() == a3["room_key"]
    f = a3["private_file"]
    assert f["info"] == "chatsvc/e2e/v3/file chatsvc/e2e/v2/file dm:alice bob " + f["transfer_id"]
    assert hkdf(V2 + bytes.fromhex(a3["shared_secret"]), f["info"].encode()).hex() == f["key"]


@pytest.mark.parametrize("case", V["case_folding"], ids=lambda c: c["label"])
def test_case_folding(case):
    label = aesgcm.context_label(Context(case["target"], case["sender"]))
    assert label.decode() == case["label"]
    if "label_hex" in case:
        assert label.hex() == case["label_hex"]
    if "context_key_aes2" in case:
        assert hkdf(V2, b"chatsvc/e2e/v2/key " + label).hex() == case["context_key_aes2"]
    if "join_proof" in case:
        assert aesgcm.join_proof(V2, case["target"]) == case["join_proof"]


def test_file_frame():
    from chatsvc.client.stream import seal as seal_frame

    f = V["file_frame"]
    label = aesgcm.context_label(Context(f["room"], "x"))
    key = hkdf(V2, aesgcm.FILE_INFO_PREFIX + label + b" " + f["transfer_id"].encode())
    assert key.hex() == f["key"]
    frame = seal_frame(key, f["transfer_id"], f["token"], f["index"], f["last"], f["data"].encode(), bytes.fromhex(f["nonce"]))
    assert frame.hex() == f["frame"]


@pytest.mark.parametrize("case", V["errors"], ids=lambda c: c["name"])
def test_refusals_have_their_reason_code(case):
    ident = identity("alice") if case.get("reader") == "alice" else None
    reader = AesGcmCipher(V1, now=lambda: V["message"]["timestamp_ms"] / 1000 + 1, identity=ident)
    reader.use_v2(V2, V["salt"])
    with pytest.raises(DecryptError) as raised:
        reader.open(case["payload"], Context(case["target"], case["sender"], history=True))
    assert raised.value.code == case["code"]


def _values(node, skip=("errors", "about", "note", "info", "nfc", "passphrase", "sign_seed", "agree_seed", "alice_seed", "bob_seed")):
    if isinstance(node, dict):
        for key, value in node.items():
            if key not in skip:
                yield from _values(value, skip)
    elif isinstance(node, list):
        for value in node:
            yield from _values(value, skip)
    elif isinstance(node, str) and (re.fullmatch(r"[0-9a-f]{24,}", node) or re.match(r"aes\d:", node)
                                    or re.fullmatch(r"[A-Za-z0-9_-]{43}", node) or re.fullmatch(r"[0-9a-f ]{39}|[0-9 ]{35}", node)):
        yield node


def test_the_prose_and_the_file_agree():
    prose = (DOCS / "encryption.md").read_text(encoding="utf-8")
    flat = re.sub(r"\s+", "", prose)
    missing = [v for v in _values(V) if re.sub(r"\s+", "", v) not in flat]
    assert not missing, f"in docs/vectors/crypto.json but not in docs/encryption.md: {missing}"
    known = {re.sub(r"\s+", "", v) for v in _values(V)}
    known |= {v for v in _values(json.loads((DOCS / "vectors" / "sealed.json").read_text())) if isinstance(v, str)}
    stray = [p for p in re.findall(r"aes\d:[A-Za-z0-9_-]+|\b[0-9a-f]{64}\b", prose)
             if p not in known and not any(p in value for value in known)]  # (a long value wrapped)
    assert not stray, f"in docs/encryption.md but not in docs/vectors/crypto.json: {stray}"
