"""
Sealed rooms, the pure parts (sealed.py, membership.py) against
docs/vectors/sealed.json -- the file tests/js/sealed.test.mjs loads too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from chatsvc.client import membership, sealed
from chatsvc.client.aesgcm import join_proof
from chatsvc.client.identity import Identity, PublicKeys
from chatsvc.client.sealed import Link, Member, SealError, unb64

ROOT = Path(__file__).resolve().parent.parent
V = json.loads((ROOT / "docs" / "vectors" / "sealed.json").read_text())


def person(name: str) -> Identity:
    p = V["people"][name]
    return Identity.from_seeds(bytes.fromhex(p["sign_seed"]), bytes.fromhex(p["agree_seed"]))


def keys(d: dict) -> PublicKeys:
    return PublicKeys(unb64(d["sign"]), unb64(d["agree"]))


def test_the_file_is_what_the_generator_writes():
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "sealed_vectors.py"), "--check"], cwd=ROOT)
    assert done.returncode == 0, "docs/vectors/sealed.json is stale: run python tools/sealed_vectors.py"


@pytest.mark.parametrize("case", V["derive"], ids=lambda c: f"{c['room']}-{c['epoch']}")
def test_derivations(case):
    secret = bytes.fromhex(case["secret"])
    master = sealed.room_master(secret, case["room"], case["epoch"])
    assert master.hex() == case["master"]
    assert sealed.secret_check(secret, case["room"], case["epoch"]) == case["check"]
    assert join_proof(master, case["room"]) == case["proof"]


def test_canonical_bytes():
    for case in V["canonical"]:
        assert sealed.canonical(case["value"]).decode() == case["bytes"]


def test_the_statement_verifies_and_a_changed_one_does_not():
    s = V["statement"]
    assert sealed.statement_verifies(s["statement"], s["signature"])
    assert sealed.statement_hash(s["statement"]).hex() == s["hash"]
    for field, value in (("serial", 2), ("epoch", 3), ("owners", []), ("room", "#ops2")):
        assert not sealed.statement_verifies(dict(s["statement"], **{field: value}), s["signature"])
    assert sealed.parse_control(s["control"])[0] == s["statement"]


def test_the_box_opens_for_its_member_only():
    b = V["box"]
    alice, bob, carol = person("alice"), person("bob"), person("carol")
    stmt = V["statement"]["statement"]
    made = sealed.seal_box(alice, Member("bob", bob.public), stmt, bytes.fromhex(b["secret"]),
                           random=lambda n: bytes.fromhex(b["nonce"]))
    assert made == b["box"]
    assert sealed.open_box(bob, alice.public.agree, stmt, b["box"]).hex() == b["secret"]
    assert sealed.open_box(carol, alice.public.agree, stmt, b["box"]) is None
    assert sealed.open_box(bob, alice.public.agree, dict(stmt, serial=9), b["box"]) is None  # bound to its statement
    assert sealed.open_box(bob, alice.public.agree, stmt, "!!") is None


@pytest.mark.parametrize("announced, server, wanted", [
    ("http:8080", "192.168.1.20:8000", "http://192.168.1.20:8080/"),
    ("https:8443", "[::1]:8000", "https://[::1]:8443/"),
    ("https://chat.example.org", "10.0.0.1:8000", "https://chat.example.org/"),
    ("", "h:1", None), ("ftp:21", "h:1", None), ("https://x/y", "h:1", None), ("http:8080 ", "h:1", None),
])
def test_the_page_address_from_caps(announced, server, wanted):
    assert sealed.page_address(announced, server) == wanted


def test_links_both_ways_and_refusals():
    v = V["link"]
    link = Link(v["link"]["room"], v["link"]["epoch"], bytes.fromhex(v["link"]["secret"]), unb64(v["link"]["owner"]),
                v["link"]["chat"], unb64(v["link"]["agree"]))
    assert sealed.make_link(link) == v["chat"]
    assert sealed.make_link(link, "https://chat.example.org") == v["page"]
    assert sealed.parse_link(v["chat"]) == link == sealed.parse_link(v["page"])
    for case in v["refused"]:
        with pytest.raises(SealError) as e:
            sealed.parse_link(case["text"])
        assert e.value.code == case["reason"], case


def _held(h):
    if h is None:
        return None
    return membership.Held(h["room"], h["epoch"], {int(e): unb64(s) for e, s in h["secrets"].items()}, h["statement"],
                           h["signature"], unb64(h["link_owner"]) if h["link_owner"] else None, h["listed"])


@pytest.mark.parametrize("case", V["judge"], ids=lambda c: c["name"])
def test_judge(case):
    verdict = membership.judge(_held(case["held"]), case["statement"], case["signature"],
                               unb64(case["secret"]) if case["secret"] else None, keys(case["carrier"]),
                               case["where"], keys(case["me"]))
    assert {"kind": verdict.kind, "reason": verdict.reason} == case["expect"]


@pytest.mark.parametrize("text", ["", sealed.MARKER, sealed.MARKER + "[]", sealed.MARKER + '{"statement":1,"sig":""}',
                                  sealed.MARKER + "{" * 5000, sealed.MARKER + "[" * 50000, sealed.MARKER + "x" * 70000])
def test_malformed_control_messages_are_refused_by_code(text):
    with pytest.raises(SealError) as e:
        sealed.parse_control(text)
    assert e.value.code == "malformed"


def test_a_statement_whose_owner_is_not_a_member_is_malformed():
    s = V["statement"]
    alone = dict(s["statement"], members=[m for m in s["statement"]["members"] if m["sign"] not in s["statement"]["owners"]])
    with pytest.raises(SealError) as e:
        sealed.parse_control(sealed.control_text(alone, s["signature"]))
    assert e.value.code == "malformed"


@given(st.recursive(st.one_of(st.integers(-2**40, 2**40), st.text()),
                    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(), inner, max_size=4)),
                    max_leaves=12))
def test_canonical_is_json_that_reads_back_the_same(value):
    text = sealed.canonical(value)
    assert text.isascii() and json.loads(text) == value
    assert sealed.canonical(json.loads(text)) == text


def test_accept_follows_the_verdicts():
    alice, bob = person("alice"), person("bob")
    case = next(c for c in V["judge"] if c["expect"]["kind"] == "invited")
    secret = unb64(case["secret"])
    v = membership.judge(None, case["statement"], case["signature"], secret, alice.public, "private", bob.public)
    held = membership.accept(None, v, case["statement"], case["signature"], secret, bob.public)
    assert (held.epoch, held.secret, held.listed) == (1, secret, True)
    assert held.owners() == [alice.public.sign]


def test_the_prose_shows_the_first_derivation():
    prose = (ROOT / "docs" / "encryption.md").read_text(encoding="utf-8")
    first = V["derive"][0]
    for value in (first["master"], first["check"], first["proof"]):
        assert value in prose


def test_a_same_epoch_statements_changes_in_words():
    from chatsvc.client.sealing import changes

    case = next(c for c in V["judge"] if c["name"] == "an owner adds a member (same epoch)")
    assert changes(case["held"]["statement"], case["statement"]) == ["added dave to"]
    op = dict(case["statement"], owners=sorted([*case["statement"]["owners"], V["people"]["dave"]["sign"]]))
    assert changes(case["statement"], op) == ["made dave an owner of"]
    assert changes(None, op) == []


def test_no_box_can_be_sealed_to_a_key_that_is_no_point():
    alice = person("alice")
    with pytest.raises(SealError) as e:
        sealed.seal_box(alice, Member("mallory", PublicKeys(bytes(32), bytes(32))), V["statement"]["statement"], bytes(32))
    assert e.value.code == "bad-key"


def test_what_a_client_sends_fits_the_relays_line_once_encrypted():
    from chatsvc.client.aesgcm import AesGcmCipher
    from chatsvc.client.ciphers import Context
    from chatsvc.grammar import DEFAULT_MAX_LINE

    text = sealed.MARKER + "x" * (sealed.MAX_SENT_CONTROL_CHARS - len(sealed.MARKER))
    assert sealed.fits(text) and not sealed.fits(text + "x")
    cipher = AesGcmCipher(bytes(32), identity=person("alice"))
    cipher.use_v2(bytes(32), "s")
    line = f"@cid=abcdefghij-123456 MSG #some-long-room-name {cipher.encrypt(text, Context('#some-long-room-name', 'alice'))}"
    assert len(line.encode()) < DEFAULT_MAX_LINE  # the longest sent is within the line limit
    assert sealed.MAX_SENT_CONTROL_CHARS < sealed.MAX_CONTROL_CHARS  # and every client reads it


def test_a_damaged_keyring_is_refused_with_its_path_not_a_traceback(tmp_path):
    from chatsvc.client.keyring import Keyring, KeyringError

    path = tmp_path / "sealed.json"
    path.write_text('{"#ops": {"room": "#ops"}}')
    with pytest.raises(KeyringError, match="sealed.json is not a chatsvc keyring"):
        Keyring(path)


def test_a_damaged_join_link_ends_the_client_with_one_line(tmp_path):
    from tests.support import CLIENT, client_env

    env = client_env(config_dir=str(tmp_path))
    done = subprocess.run(CLIENT + ["--join", "https://chat.example.org/#join=%%%", "--nick", "erin"],
                          env=env, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert done.returncode == 1
    assert done.stderr.strip() == "--join: the link's #join part is damaged (cut short or mistyped?): ask for it again"


def test_a_first_join_reads_at_most_three_earlier_epochs_oldest_first():
    from chatsvc.client.epochs import MAX_EARLIER, Epochs
    from chatsvc.client.keyring import Keyring

    sent = []

    class Stand:
        def __init__(self):
            self.delivery = type("D", (), {"seen_in": lambda _, room: False,
                                            "history_request": lambda _, room: ("last", 20)})()
            self.presence = type("P", (), {"moving": set(), "rejoining": set()})()
            self.protocol = type("Pr", (), {"join": lambda _, room, proof: sent.append(("JOIN", proof)),
                                            "request_history": lambda _, *a: sent.append(("HISTORY",))})()

    keyring = Keyring()
    keyring.put("#ops", membership.Held("#ops", 5, {e: bytes([e]) * 32 for e in range(1, 6)}))
    epochs = Epochs(Stand(), keyring)
    assert epochs.earlier("#ops") and MAX_EARLIER == 3
    proof_2 = join_proof(sealed.room_master(bytes([2]) * 32, "#ops", 2), "#ops")
    assert sent == [("JOIN", proof_2), ("HISTORY",)]  # epochs 2, 3, 4 (not 1); the next once its history is in
    assert epochs.room_master("#ops") == sealed.room_master(bytes([2]) * 32, "#ops", 2)  # what arrives now is epoch 2's
    assert not epochs.earlier("#ops")  # once per run
