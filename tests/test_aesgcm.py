"""Level 1: the aes1 end-to-end scheme -- vectors, tampering, replays."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import struct

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from chatsvc.client import aesgcm, replay  # noqa: F401
from chatsvc.client.replay import ReplayGuard
from chatsvc.client.aesgcm import AesGcmCipher
from chatsvc.client.ciphers import CaesarCipher, Context, DecryptError

PASSPHRASE = "correct horse battery staple"
MASTER = bytes.fromhex("61f5a255fb11606b51dd53a2724510694574fd13b54dfd869f79e99d038b2e2f")
T0 = 1767225600.0  # 2026-01-01T00:00:00Z
SENDER_ID = bytes(range(8))
NONCE = bytes(range(0x10, 0x1C))
ROOM_VECTOR = (
    Context("#Lobby", "Alice"),
    "Hello, 世界!",
    "aes1:AQABAgMEBQYHAAAAAAAAAAEAAAGbdtqoABAREhMUFRYXGBkaGwCGrM6vtQ06esURUzy6hv9B20D2T0d9m_tjc2ef_g",
)
DM_VECTOR = (
    Context("bob", "Alice"),
    "psst",
    "aes1:AQABAgMEBQYHAAAAAAAAAAEAAAGbdtqoABAREhMUFRYXGBkaG_GxKwtysfJTRocqDzD1aHNapu7M",
)


def fixed_cipher(now=T0):
    randoms = iter([SENDER_ID, NONCE])
    return AesGcmCipher(MASTER, now=lambda: now, random=lambda n: next(randoms))


class Clock:
    def __init__(self, t=T0):
        self.t = t

    def __call__(self):
        return self.t


def pair(clock=None):
    clock = clock or Clock()
    return AesGcmCipher(MASTER, now=clock), AesGcmCipher(MASTER, now=clock)


# --- vectors -----------------------------------------------------------------


@pytest.mark.slow
def test_master_key_vector():
    assert aesgcm.derive_master_key(PASSPHRASE) == MASTER


@pytest.mark.parametrize("context, text, payload", [ROOM_VECTOR, DM_VECTOR])
def test_payload_vectors(context, text, payload):
    assert fixed_cipher().encrypt(text, context) == payload
    receiver = AesGcmCipher(MASTER, now=lambda: T0)
    # the receiver sees the server's spelling of names: case does not matter
    seen_as = Context(context.target.upper(), context.sender.lower())
    assert receiver.decrypt(payload, seen_as) == text


def test_private_context_is_the_same_from_both_ends():
    # Alice sends to bob; bob receives "MSG Alice bob ..." -- same label.
    assert aesgcm.context_label(Context("bob", "Alice")) == aesgcm.context_label(Context("Bob", "alice"))
    assert aesgcm.context_label(Context("bob", "Alice")) == b"dm:alice bob"


# An independent implementation of docs/encryption.md, from hashlib/hmac and
# raw AES-GCM, to check the reference against the document.
def _hkdf_sha256(ikm: bytes, info: bytes, length: int = 32) -> bytes:
    prk = hmac.new(b"\x00" * 32, ikm, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


@functools.lru_cache
def _doc_master(passphrase: str) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", passphrase.encode(), b"chatsvc/e2e/v1/pbkdf2-salt", 600_000)


def _doc_encrypt(passphrase, label, sender, text, sender_id, counter, ms, nonce):
    key = _hkdf_sha256(_doc_master(passphrase), b"chatsvc/e2e/v1/key " + label.encode())
    header = b"\x01" + sender_id + counter.to_bytes(8, "big") + ms.to_bytes(8, "big") + nonce
    s = sender.casefold().encode()
    aad = b"chatsvc/e2e/v1" + struct.pack(">H", len(label.encode())) + label.encode() + struct.pack(">H", len(s)) + s + header
    sealed = AESGCM(key).encrypt(nonce, text.encode(), aad)
    return "aes1:" + base64.urlsafe_b64encode(header + sealed).decode().rstrip("=")


@pytest.mark.slow
@pytest.mark.parametrize(
    "label, vector", [("room:#lobby", ROOM_VECTOR), ("dm:alice bob", DM_VECTOR)]
)
def test_vectors_match_an_independent_implementation(label, vector):
    context, text, payload = vector
    assert _doc_encrypt(PASSPHRASE, label, context.sender, text, SENDER_ID, 1, 1767225600000, NONCE) == payload


# --- properties ----------------------------------------------------------------


@given(st.text(), st.sampled_from(["#lobby", "#Équipe", "bob", "Zoë"]))
@settings(max_examples=200)
def test_round_trip(text, target):
    alice, bob = pair()
    assert bob.decrypt(alice.encrypt(text, Context(target, "alice")), Context(target, "alice")) == text


@given(st.text(min_size=8))
def test_ciphertext_reveals_no_plaintext(text):
    # (short texts could turn up in random base64 by chance)
    payload = AesGcmCipher(MASTER).encrypt(text * 3, Context("#a", "x"))
    assert text * 3 not in payload


def test_fresh_nonce_every_message():
    alice, _ = pair()
    payloads = {alice.encrypt("same", Context("#a", "alice")) for _ in range(100)}
    assert len(payloads) == 100


def test_rooms_never_share_a_key():
    labels = [b"room:#a", b"room:#b", b"dm:a b", b"dm:a c"]
    keys = {aesgcm.context_key(MASTER, label) for label in labels}
    assert len(keys) == len(labels)


# --- refusals ------------------------------------------------------------------


def test_every_changed_byte_is_rejected():
    alice, bob = pair()
    ctx = Context("#lobby", "alice")
    payload = alice.encrypt("attack at dawn", ctx)
    envelope = base64.urlsafe_b64decode(payload[5:] + "=" * (-len(payload[5:]) % 4))
    for i in range(len(envelope)):
        tampered = bytearray(envelope)
        tampered[i] ^= 0x01
        text = "aes1:" + base64.urlsafe_b64encode(bytes(tampered)).decode().rstrip("=")
        with pytest.raises(DecryptError):
            bob.decrypt(text, ctx)
    assert bob.decrypt(payload, ctx) == "attack at dawn"  # the original still reads


@pytest.mark.parametrize(
    "claimed",
    [
        Context("#other", "alice"),  # moved to another room
        Context("#lobby", "mallory"),  # misattributed
        Context("alice", "bob"),  # turned into a private message
    ],
)
def test_relay_cannot_move_or_misattribute(claimed):
    alice, bob = pair()
    payload = alice.encrypt("hi", Context("#lobby", "alice"))
    with pytest.raises(DecryptError, match="does not authenticate"):
        bob.decrypt(payload, claimed)


def test_private_message_cannot_be_redirected():
    alice, carol = pair()
    payload = alice.encrypt("for bob only", Context("bob", "alice"))
    with pytest.raises(DecryptError):
        carol.decrypt(payload, Context("carol", "alice"))


def test_replay_is_rejected():
    alice, bob = pair()
    ctx = Context("#lobby", "alice")
    first = alice.encrypt("one", ctx)
    second = alice.encrypt("two", ctx)
    assert bob.decrypt(first, ctx) == "one"
    assert bob.decrypt(second, ctx) == "two"
    with pytest.raises(DecryptError, match="replayed"):
        bob.decrypt(first, ctx)
    with pytest.raises(DecryptError, match="replayed"):
        bob.decrypt(second, ctx)


def test_a_new_session_of_the_same_sender_is_accepted():
    clock = Clock()
    alice1, bob = pair(clock)
    alice2 = AesGcmCipher(MASTER, now=clock)
    ctx = Context("#lobby", "alice")
    bob.decrypt(alice1.encrypt("a", ctx), ctx)
    bob.decrypt(alice1.encrypt("b", ctx), ctx)
    assert bob.decrypt(alice2.encrypt("after restart", ctx), ctx) == "after restart"


@pytest.mark.parametrize("skew", [-601, 601, 86400])
def test_stale_or_future_messages_are_rejected(skew):
    clock = Clock()
    alice, bob = pair(clock)
    ctx = Context("#lobby", "alice")
    payload = alice.encrypt("old news", ctx)
    clock.t += skew
    with pytest.raises(DecryptError, match="stale"):
        bob.decrypt(payload, ctx)


def test_small_clock_skew_is_fine():
    clock = Clock()
    alice, bob = pair(clock)
    ctx = Context("#lobby", "alice")
    payload = alice.encrypt("hi", ctx)
    clock.t -= 30
    assert bob.decrypt(payload, ctx) == "hi"


def test_wrong_passphrase_is_a_clear_error():
    alice = AesGcmCipher(MASTER, now=lambda: T0)
    eve = AesGcmCipher(bytes(32), now=lambda: T0)
    payload = alice.encrypt("secret", Context("#a", "alice"))
    with pytest.raises(DecryptError, match="different passphrase"):
        eve.decrypt(payload, Context("#a", "alice"))


@pytest.mark.parametrize(
    "payload, why",
    [
        ("aes1:", "not base64url"),
        ("aes1:!!!!", "not base64url"),
        ("aes1:AAAA", "too short"),
        ("aes1:" + base64.urlsafe_b64encode(b"\x02" + bytes(60)).decode().rstrip("="), "version 2"),
        ("caesar:Ryvk", "'caesar'"),
        ("plain text", "scheme tag"),
    ],
)
def test_malformed_payloads(payload, why):
    with pytest.raises(DecryptError, match=why):
        AesGcmCipher(MASTER).decrypt(payload, Context("#a", "x"))


def test_caesar_and_aes_tell_each_other_apart():
    ctx = Context("#a", "x")
    with pytest.raises(DecryptError, match="'aes1'"):
        CaesarCipher().decrypt(AesGcmCipher(MASTER).encrypt("hi", ctx), ctx)
    with pytest.raises(DecryptError, match="'caesar'"):
        AesGcmCipher(MASTER).decrypt(CaesarCipher().encrypt("hi", ctx), ctx)


def test_replay_memory_is_bounded():
    clock = Clock()
    bob = AesGcmCipher(MASTER, now=clock, replay=ReplayGuard(memory=5))
    for i in range(20):
        sender = AesGcmCipher(MASTER, now=clock)
        bob.decrypt(sender.encrypt("x", Context("#a", f"user{i}")), Context("#a", f"user{i}"))
    assert len(bob.replay) == 5


def test_history_may_arrive_after_newer_messages():
    clock = Clock()
    alice, bob = pair(clock)
    ctx = Context("#lobby", "alice")
    older = [alice.encrypt(f"m{n}", ctx) for n in range(5)]
    newest = alice.encrypt("live", ctx)
    assert bob.decrypt(newest, ctx) == "live"
    history = Context("#lobby", "alice", history=True)
    assert [bob.decrypt(p, history) for p in older] == [f"m{n}" for n in range(5)]
    # history asked for again is not an error (it is shown as earlier) ...
    assert bob.decrypt(older[2], history) == "m2"
    # ... but nothing seen, in history or live, passes as live again
    for payload in (older[2], newest):
        with pytest.raises(DecryptError, match="replayed"):
            bob.decrypt(payload, ctx)


def test_counters_far_below_the_window_are_refused():
    clock = Clock()
    alice, bob = AesGcmCipher(MASTER, now=clock), AesGcmCipher(MASTER, now=clock, replay=ReplayGuard(window=8))
    ctx = Context("#lobby", "alice")
    first = alice.encrypt("first", ctx)
    for n in range(10):
        bob.decrypt(alice.encrypt(str(n), ctx), ctx)
    with pytest.raises(DecryptError, match="replayed"):
        bob.decrypt(first, ctx)


def test_history_skips_the_freshness_check_only():
    clock = Clock()
    alice, bob = pair(clock)
    payload = alice.encrypt("from yesterday", Context("#lobby", "alice"))
    clock.t += 86400
    with pytest.raises(DecryptError, match="stale"):
        bob.decrypt(payload, Context("#lobby", "alice"))
    assert bob.decrypt(payload, Context("#lobby", "alice", history=True)) == "from yesterday"
    with pytest.raises(DecryptError, match="does not authenticate"):
        bob.decrypt(payload, Context("#other", "alice", history=True))


# --- aes2 (docs/encryption.md, "Scheme aes2") ------------------------------------------

V2_SALT = "AAECAwQFBgcICQoLDA0ODw"
V2_MASTER = bytes.fromhex("7f32341638165b4d488876d3d63044123558f0abd66356c3c6dbb902bba904c8")
V2_PROOF = "OD7trhWlSg2EvqrbNMWSofcWx9YJLbjC8gKfDXSQjPM"
V2_PAYLOAD = (
    "aes2:AgABAgMEBQYHAAAAAAAAAAEAAAGbdtqoABAREhMUFRYXGBkaG6Aj84_2r7haQ5OT6be9hW0ueHabY1RXhWftvWr3-Q"
)


def test_aes2_vectors_from_an_independent_implementation():
    import unicodedata

    master = hashlib.pbkdf2_hmac(
        "sha256", unicodedata.normalize("NFC", PASSPHRASE).encode(),
        b"chatsvc/e2e/v2/salt " + V2_SALT.encode(), 600_000,
    )
    assert master == V2_MASTER == aesgcm.derive_master_key_v2(PASSPHRASE, V2_SALT)
    proof = _hkdf_sha256(master, b"chatsvc/e2e/v2/join room:#lobby")
    assert base64.urlsafe_b64encode(proof).rstrip(b"=").decode() == V2_PROOF == aesgcm.join_proof(master, "#Lobby")
    key = _hkdf_sha256(master, b"chatsvc/e2e/v2/key room:#lobby")
    header = struct.pack(">B8sQQ12s", 2, SENDER_ID, 1, 1767225600000, NONCE)
    aad = b"chatsvc/e2e/v2" + b"\x00\x0broom:#lobby" + b"\x00\x05alice" + header
    sealed = AESGCM(key).encrypt(NONCE, "Hello, 世界!".encode(), aad)
    assert "aes2:" + base64.urlsafe_b64encode(header + sealed).rstrip(b"=").decode() == V2_PAYLOAD


@pytest.mark.parametrize(
    "target, sender, label, key, proof",
    [
        ("#Straße", "x", "room:#strasse", "b4e757e5dbc7c145f8804b6a981afe37190b49d8d6f1f7042f985004caa1b99a",
         "RAAov6IqvOj1KEiDHlsQZ0swyakNATa2gKCOgbif5I4"),
        ("#ΌΣΟΣ", "x", "room:#όσοσ", "b833b6e3d6bdabedca24e6eb7900c23dd7d2e2f812c62e6d717b8b5819c7d549",
         "OWy8v-hM0Zuz_AXfE0kJb1goL9y3hLI-UEYO4Pa3zLk"),
        ("İlkay", "ẞen", "dm:i\u0307lkay ssen", "eed91a56af6f42a1f819137582b6b2df7b014e2d3d608d430124acdf0c0fc9b3", None),
    ],
)
def test_case_folding_vectors(target, sender, label, key, proof):
    # docs/encryption.md, "Case folding": the names JavaScript's toLowerCase gets wrong.
    assert aesgcm.context_label(Context(target, sender)).decode() == label
    assert _hkdf_sha256(V2_MASTER, b"chatsvc/e2e/v2/key " + label.encode()).hex() == key
    assert aesgcm.context_key(V2_MASTER, label.encode(), aesgcm.AES2).hex() == key
    if proof:
        assert aesgcm.join_proof(V2_MASTER, target) == proof


def test_aes2_round_trip_and_old_aes1_history_stays_readable():
    clock = Clock()
    alice, bob = pair(clock)
    old = alice.encrypt("from before the upgrade", Context("#a", "alice"))
    for c in (alice, bob):
        c.use_v2(V2_MASTER, V2_SALT)
    new = alice.encrypt("after", Context("#a", "alice"))
    assert new.startswith("aes2:") and old.startswith("aes1:")
    assert bob.decrypt(new, Context("#a", "alice")) == "after"
    assert bob.decrypt(old, Context("#a", "alice")) == "from before the upgrade"


def test_aes2_needs_the_relays_salt():
    clock = Clock()
    alice, bob = pair(clock)
    alice.use_v2(V2_MASTER, V2_SALT)
    with pytest.raises(DecryptError, match="no aes2 key"):
        bob.decrypt(alice.encrypt("x", Context("#a", "alice")), Context("#a", "alice"))
    bob.use_v2(aesgcm.derive_master_key_v2(PASSPHRASE, "another-deployment-salt"), "another-deployment-salt")
    with pytest.raises(DecryptError, match="does not authenticate"):
        bob.decrypt(alice.encrypt("x", Context("#a", "alice")), Context("#a", "alice"))


def test_passphrase_is_normalised_nfc():
    composed = "caf\u00e9 au lait"
    decomposed = "cafe\u0301 au lait"
    assert aesgcm.derive_master_key_v2(composed, V2_SALT) == aesgcm.derive_master_key_v2(decomposed, V2_SALT)


def test_the_test_suites_key_cache_gives_the_same_keys_and_is_off_by_default(tmp_path, monkeypatch):
    monkeypatch.delenv("CHATSVC_TEST_KDF_CACHE", raising=False)
    plain = aesgcm.derive_master_key_v2("some passphrase", "AAECAwQFBgcICQoLDA0ODw")
    monkeypatch.setenv("CHATSVC_TEST_KDF_CACHE", str(tmp_path))
    assert aesgcm.derive_master_key_v2("some passphrase", "AAECAwQFBgcICQoLDA0ODw") == plain
    assert len(list(tmp_path.iterdir())) == 1  # kept for the next client of the run ...
    assert aesgcm.derive_master_key_v2("some passphrase", "AAECAwQFBgcICQoLDA0ODw") == plain  # ... and read back
