"""
Per-user keys (aes3): identities, pinned keys, and the attacks they stop --
a member with the passphrase writing under someone else's nick, a relay
swapping keys, a third member reading a private conversation.  Level 1 and
2: the cipher alone, and client sessions wired to the test as the relay.
"""

from __future__ import annotations

import base64
import os
import stat

import pytest

from chatsvc.client.aesgcm import AesGcmCipher, DecryptError
from chatsvc.client.ciphers import Context
from chatsvc.client.identity import Identity, fingerprint, safety_number
from chatsvc.client.pins import CHANGED, NEW, PINNED, VERIFIED, KnownKeys
from tests.test_client_attacks import MASTER, MASTER_V2, SALT, T0, Clock
from tests.test_client_attacks import Session as AttackSession

ALICE = Identity.from_seeds(bytes(range(32)), bytes(range(32, 64)))
BOB = Identity.from_seeds(bytes(range(64, 96)), bytes(range(96, 128)))
MALLORY = Identity.from_seeds(bytes(range(128, 160)), bytes(range(160, 192)))


def signing_cipher(identity: Identity | None, clock=None, peers=None) -> AesGcmCipher:
    c = AesGcmCipher(MASTER, now=clock or Clock(), identity=identity)
    c.use_v2(MASTER_V2, SALT)
    if peers:
        c.peer_agree = lambda nick: peers.get(nick.casefold())
    return c


# --- identities and known keys ---------------------------------------------------------------


def test_identity_is_made_once_with_mode_0600_and_read_back(tmp_path):
    path = tmp_path / "conf" / "identity"
    first, made = Identity.load_or_create(path)
    again, made_again = Identity.load_or_create(path)
    assert made and not made_again
    assert first.public == again.public
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_a_damaged_identity_file_is_a_clear_error(tmp_path):
    path = tmp_path / "identity"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="is not a chatsvc identity"):
        Identity.load_or_create(path)


def test_fingerprints_and_safety_numbers():
    fp = fingerprint(ALICE.public)
    assert len(fp.split()) == 8 and all(len(group) == 4 for group in fp.split())
    number = safety_number(ALICE.public, BOB.public)
    assert number == safety_number(BOB.public, ALICE.public)  # the same on both sides
    assert len(number.split()) == 6 and all(len(g) == 5 and g.isdigit() for g in number.split())
    assert number != safety_number(ALICE.public, MALLORY.public)


def test_known_keys_pin_first_flag_changes_and_persist(tmp_path):
    path = tmp_path / "known_keys"
    known = KnownKeys(path)
    assert known.check("bob", BOB.public) == NEW
    assert known.check("bob", BOB.public) == PINNED
    assert known.check("bob", MALLORY.public) == CHANGED
    assert KnownKeys(path).keys_of("bob") == BOB.public  # on disk, and the change was not
    known.accept("bob", MALLORY.public)
    reread = KnownKeys(path)
    assert reread.check("bob", MALLORY.public) == VERIFIED


# --- the scheme ----------------------------------------------------------------------------


def test_aes3_room_message_is_signed_and_carries_the_keys():
    clock = Clock()
    payload = signing_cipher(ALICE, clock).encrypt("hello", Context("#lobby", "alice"))
    assert payload.startswith("aes3:")
    opened = signing_cipher(BOB, clock).open(payload, Context("#lobby", "alice"))
    assert opened.text == "hello" and opened.signer == ALICE.public and not opened.private


def test_a_relay_that_swaps_the_keys_cannot_re_sign():
    clock = Clock()
    payload = signing_cipher(ALICE, clock).encrypt("hello", Context("#lobby", "alice"))
    envelope = bytearray(base64.urlsafe_b64decode(payload[5:] + "=="))
    envelope[-160:-128] = MALLORY.public.sign  # its own key in place of alice's
    forged = "aes3:" + base64.urlsafe_b64encode(bytes(envelope)).rstrip(b"=").decode()
    with pytest.raises(DecryptError, match="signature does not verify"):
        signing_cipher(BOB, clock).open(forged, Context("#lobby", "alice"))


def test_private_messages_between_identities_are_unreadable_to_a_member_with_the_passphrase():
    clock = Clock()
    alice = signing_cipher(ALICE, clock, peers={"bob": BOB.public.agree})
    payload = alice.encrypt("just us", Context("bob", "alice"))
    bob = signing_cipher(BOB, clock)
    opened = bob.open(payload, Context("bob", "alice"))
    assert opened.text == "just us" and opened.private
    # mallory has the passphrase (and the relay's help: the exact payload)
    with pytest.raises(DecryptError, match="keyed for someone else's key"):
        signing_cipher(MALLORY, clock).open(payload, Context("bob", "alice"))
    # ...and without her own identity in the way, the passphrase key alone fails too
    with pytest.raises(DecryptError):
        signing_cipher(None, clock).open(payload, Context("bob", "alice"))


def test_private_file_frames_take_the_shared_secret_too():
    alice = signing_cipher(ALICE, peers={"bob": BOB.public.agree})
    bob = signing_cipher(BOB, peers={"alice": ALICE.public.agree})
    mallory = signing_cipher(MALLORY, peers={"alice": ALICE.public.agree, "bob": BOB.public.agree})
    context = Context("bob", "alice")
    key = alice.file_key(context, "t1", peer="bob")
    assert key == bob.file_key(context, "t1", peer="alice")
    assert key != mallory.file_key(context, "t1", peer="alice")
    assert key != signing_cipher(None).file_key(context, "t1")


# --- sessions: what the user sees -------------------------------------------------------------


def Session(nick: str, identity: Identity, clock=None, known=None):
    """A signing client session, the test playing the relay; ``known``: the pins kept on disk by an earlier run."""
    return AttackSession(nick, clock=clock, identity=identity, known=known)


def from_(identity: Identity | None, text: str, target: str, sender: str, clock, peers=None) -> str:
    return signing_cipher(identity, clock, peers).encrypt(text, Context(target, sender))


def test_a_member_with_the_passphrase_and_another_key_cannot_write_as_a_pinned_nick():
    s = Session("alice", ALICE).ready()
    s.server(f"MSG bob #lobby {from_(BOB, 'hi, it is bob', '#lobby', 'bob', s.clock)}")
    shown = s.display.take()
    assert "[#lobby] bob: hi, it is bob" in shown
    assert any(line.startswith("* bob's key: ") and "first seen" in line for line in shown)
    # bob is offline; mallory takes his nick and writes, with the passphrase
    s.server(f"MSG bob #lobby {from_(MALLORY, 'send the money to me', '#lobby', 'bob', s.clock)}")
    shown = s.display.take()
    assert shown == ["! bob's key changed — not shown as bob; /verify bob"]
    # ...nor with no signature at all (an old client, or a stripped one)
    s.server(f"MSG bob #lobby {from_(None, 'send it anyway', '#lobby', 'bob', s.clock)}")
    assert s.display.take() == [
        "! a message under bob's name without bob's signature (they sign theirs) — not shown as bob"
    ]


def test_verify_shows_the_safety_number_and_accepts_a_changed_key_after_comparing():
    s = Session("alice", ALICE).ready()
    s.server(f"MSG bob #lobby {from_(BOB, 'one', '#lobby', 'bob', s.clock)}")
    s.server(f"MSG bob #lobby {from_(MALLORY, 'new laptop', '#lobby', 'bob', s.clock)}")
    s.display.take()
    s.session.user_line("/whois bob")
    (whois,) = s.display.take()
    assert "key CHANGED to " + MALLORY.public.fingerprint in whois
    s.session.user_line("/verify bob")
    number = safety_number(ALICE.public, MALLORY.public)
    assert s.display.take() == [f"* safety number with bob: {number} — compare it with bob in person or on a call; "
                                "if it is the same on both sides, type /verify bob yes"]
    s.session.user_line("/whois bob")
    assert "not accepted" in s.display.take()[0]  # seeing the number marks nothing
    s.session.user_line("/verify bob yes")
    shown = s.display.take()
    assert shown[0] == f"* bob's key {MALLORY.public.fingerprint} is now verified"
    assert shown[1] == "[#lobby] bob: new laptop (held until /verify)"
    s.server(f"MSG bob #lobby {from_(MALLORY, 'thanks', '#lobby', 'bob', s.clock)}")
    assert s.display.take() == ["[#lobby] bob: thanks"]
    s.session.user_line("/whois bob")
    assert s.display.take()[0].endswith(f"key {MALLORY.public.fingerprint}, verified")


def test_verifying_takes_two_steps_and_a_wrong_number_marks_nothing():
    # Issue #23, 2: /verify shows; "yes" (after seeing it) or the number typed back confirms.
    s = Session("alice", ALICE).ready()
    s.session.user_line("/verify bob yes")
    assert s.display.take() == ["! no keys seen from bob yet: they must write something first"]
    s.server(f"MSG bob #lobby {from_(BOB, 'one', '#lobby', 'bob', s.clock)}")
    s.display.take()
    s.session.user_line("/verify bob yes")
    assert s.display.take() == ["! compare first: /verify bob shows the safety number to compare"]
    number = safety_number(ALICE.public, BOB.public)
    wrong = ("1" if number[0] != "1" else "2") + number[1:]
    s.session.user_line(f"/verify bob {wrong}")
    assert s.display.take()[0].startswith("! that is not your safety number with bob — NOT verified")
    s.session.user_line("/verify bob " + number.replace(" ", ""))
    assert s.display.take() == [f"* bob's key {BOB.public.fingerprint} is now verified"]
    s.session.user_line("/names")
    s.server("NAMES #lobby alice bob", "ENDNAMES #lobby")
    assert s.display.take() == ["* in #lobby: alice, bob (verified)"]
    s.session.user_line("/query bob")
    assert s.display.prompt == "[→ bob, verified] "


def test_yes_after_the_key_changed_since_comparing_marks_nothing():
    s = Session("alice", ALICE).ready()
    s.server(f"MSG bob #lobby {from_(BOB, 'one', '#lobby', 'bob', s.clock)}")
    s.session.user_line("/verify bob")
    s.server(f"MSG bob #lobby {from_(MALLORY, 'swapped', '#lobby', 'bob', s.clock)}")
    s.display.take()
    s.session.user_line("/verify bob yes")
    assert s.display.take() == ["! bob's key changed since you compared: /verify bob shows the new number"]
    assert not s.session.trust.verified("bob")


def test_verification_follows_the_key_to_a_new_nick():
    # Issue #23, 3: bob, verified, becomes robert: robert is verified, announced as bob.
    s = Session("alice", ALICE).ready()
    s.server(f"MSG bob #lobby {from_(BOB, 'one', '#lobby', 'bob', s.clock)}")
    s.session.user_line("/verify bob")
    s.session.user_line("/verify bob yes")
    s.display.take()
    s.server("NICK bob robert", f"MSG robert #lobby {from_(BOB, 'new name', '#lobby', 'robert', s.clock)}")
    assert s.display.take() == [
        "* bob is now known as robert",
        f"* bob is now robert: the same key, verified ({BOB.public.fingerprint})",
        "[#lobby] robert: new name",
    ]
    assert s.session.trust.verified("robert")
    s.session.user_line("/whois robert")
    assert s.display.take()[0].endswith(f"key {BOB.public.fingerprint}, verified")


def test_keys_first_seen_in_history_are_told_in_one_line_after_it():
    # Issue #23, 4: not one "first seen" line per member, out of order with the history.
    s = AttackSession("alice", identity=ALICE, known=KnownKeys())
    s.server("HELLO chatsvc 1 test", f"CAPS join-proof salt={SALT}", "OK NICK alice")
    carol = Identity.from_seeds(bytes(range(1, 33)), bytes(range(33, 65)))
    lines = ["JOIN #lobby alice", "NAMES #lobby alice bob carol", "ENDNAMES #lobby"]
    for n, (nick, who) in enumerate([("bob", BOB), ("carol", carol), ("bob", BOB)], start=1):
        lines.append(f"@id={n};time={int(T0 * 1000)};history MSG {nick} #lobby "
                     f"{from_(who, f'm{n}', '#lobby', nick, s.clock)}")
    s.server(*lines, "ENDHISTORY #lobby complete")
    shown = [line for line in s.display.take() if not line.startswith("* in #lobby")]
    assert [line.split(" (")[0] for line in shown[-4:]] == [
        "[#lobby] bob: m1", "[#lobby] carol: m2", "[#lobby] bob: m3",
        "* pinned the keys of bob, carol on first use; /verify nick to compare safety numbers",
    ]
    assert not any("first seen" in line for line in shown)
    # live, a first sighting is still its own line (with the fingerprint)
    s.server(f"MSG dave #lobby {from_(MALLORY, 'hi', '#lobby', 'dave', s.clock)}")
    assert s.display.take()[0].startswith("* dave's key: ")


def test_nothing_private_goes_to_a_nick_whose_key_changed_until_verified():
    s = Session("alice", ALICE).ready()
    s.server(f"MSG bob #lobby {from_(BOB, 'one', '#lobby', 'bob', s.clock)}")
    s.server(f"MSG bob #lobby {from_(MALLORY, 'two', '#lobby', 'bob', s.clock)}")
    s.display.take()
    s.sent()
    s.session.user_line("/msg bob the code is 1234")
    assert s.sent() == []
    assert s.display.take() == ["! not sent: bob's key changed; compare safety numbers with /verify bob first"]


def test_unsigned_messages_from_unpinned_nicks_are_marked_never_verified():
    s = Session("alice", ALICE).ready()
    s.server(f"MSG carol #lobby {from_(None, 'from an older client', '#lobby', 'carol', s.clock)}")
    assert s.display.take() == ["[#lobby] carol (unsigned): from an older client"]
    s.session.user_line("/whois carol")
    assert s.display.take()[0].endswith("; no key seen (unsigned so far)")


def test_a_private_message_waits_for_the_recipients_keys_then_only_the_two_can_read_it():
    alice = Session("alice", ALICE).ready()
    bob = Session("bob", BOB, clock=alice.clock).ready()
    alice.session.user_line("/msg bob the door code is 4711")
    (request,) = alice.sent()  # a key request first; the message waits
    assert request.startswith("MSG bob aes3:")
    bob.server(request.replace("MSG bob ", "MSG alice bob ", 1))
    (answer,) = bob.sent()  # bob's client answers with its keys, by itself
    assert answer.startswith("MSG alice aes3:") and bob.display.take()[-1].startswith("* alice's key: ")
    alice.server("OK MSG bob", answer.replace("MSG alice ", "MSG bob alice ", 1))
    (private,) = alice.sent()
    bob.server("OK MSG alice", private.replace("MSG bob ", "MSG alice bob ", 1))
    assert bob.display.take() == ["[alice → you] the door code is 4711"]
    # mallory, a member with the passphrase, given the very payload by the relay
    mallory = Session("mallory", MALLORY, clock=alice.clock).ready()
    mallory.server(private.replace("MSG bob ", "MSG alice mallory ", 1))
    assert not any("4711" in line for line in mallory.display.take())
    with pytest.raises(DecryptError):
        signing_cipher(MALLORY, alice.clock).open(private.split(" ", 2)[2], Context("bob", "alice"))


def envelope_peer(line: str) -> bytes:
    """The ``peer`` field of an aes3 payload in a MSG line: whose key it is keyed for (zeros: the passphrase)."""
    body = line.rsplit(" ", 1)[1].split(":", 1)[1]
    envelope = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    return envelope[-96:-64]


def test_an_unanswered_key_exchange_is_retried_then_waits_for_the_user_never_downgraded_by_itself():
    """Hole 2: one dropped answer no longer sends the message keyed by the passphrase alone."""
    alice = Session("alice", ALICE).ready()
    alice.session.user_line("/msg dave hello")
    assert len(alice.sent()) == 1  # the key request; the message waits
    alice.server("OK MSG dave")  # delivered, never answered (an older client, or the answer dropped)
    for delay in (5, 10):
        alice.reactor.advance(delay)
        (again,) = alice.sent()  # asked again, with backoff
        assert envelope_peer(again) == bytes(32)  # a request: dave's keys are not known
        alice.server("OK MSG dave")
    alice.reactor.advance(20)
    assert alice.sent() == []  # nothing went out weaker by itself
    assert alice.display.take() == [
        "! dave did not answer a key exchange (3 tries in 35 s): 1 private message waits; /retry dave asks again, "
        "/unsafe dave sends it without forward secrecy"
    ]
    alice.reactor.advance(600)
    assert alice.sent() == []
    alice.session.user_line("/unsafe dave")  # the user asks, for this message
    (weak,) = alice.sent()
    assert envelope_peer(weak) == bytes(32)
    assert alice.display.take() == ["! as you asked, sent to dave keyed by the passphrase alone, which every member can read"]
    alice.server("OK MSG dave")
    # the mark does not stay: the next message asks again and waits
    alice.session.user_line("/msg dave still there?")
    (request,) = alice.sent()
    assert "dave" in request and alice.display.take() == ["[you → dave] hello"]


def test_a_dropped_answer_is_asked_for_again_and_the_message_goes_keyed_to_both_sessions():
    alice = Session("alice", ALICE).ready()
    bob = Session("bob", BOB, clock=alice.clock).ready()
    alice.session.user_line("/msg bob the door code is 4711")
    (request,) = alice.sent()
    bob.server(request.replace("MSG bob ", "MSG alice bob ", 1))
    bob.sent()  # the answer, which the relay drops
    alice.server("OK MSG bob")
    alice.reactor.advance(5)
    (request,) = alice.sent()
    bob.server(request.replace("MSG bob ", "MSG alice bob ", 1))
    (answer,) = bob.sent()  # answered again: the same request may have been lost on its way
    assert answer.startswith("MSG alice aes3:")
    alice.server("OK MSG bob", answer.replace("MSG alice ", "MSG bob alice ", 1))
    (private,) = alice.sent()
    assert envelope_peer(private) == bob.cipher.session_public  # keyed to bob's session
    bob.server(private.replace("MSG bob ", "MSG alice bob ", 1))
    assert bob.display.take()[-1] == "[alice → you] the door code is 4711"


def test_a_key_request_to_a_nick_nobody_has_says_so_at_once():
    alice = Session("alice", ALICE).ready()
    alice.session.user_line("/msg dave hello")
    alice.sent()
    alice.server("ERROR no-such-nick no one is called dave")
    assert alice.display.take() == ["! nobody is called dave — not sent: hello"]
    alice.reactor.advance(60)
    assert alice.sent() == [] and alice.display.take() == []


# --- docs/encryption.md, the aes3 vectors: the reference and an independent implementation ------

V2_MASTER = bytes.fromhex("7f32341638165b4d488876d3d63044123558f0abd66356c3c6dbb902bba904c8")
V2_SALT = "AAECAwQFBgcICQoLDA0ODw"
ROOM_PAYLOAD = (
    "aes3:AwABAgMEBQYHAAAAAAAAAAEAAAGbdtqoABAREhMUFRYXGBkaG1Yf7rLg9c_dcbE4lS1nch0LLMhDGN5axW6yW-7kXAOhB7_zzhC-HXDd"
    "GOdLwJln5NYwm6UNXx3chmQSVTG4NYBy1jZYgNGu6jKa35EhODhR7SGijjt16WXQ0s0WYlQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    "AOeTvOetUfVik-pdLZDxzeD45qi407jcbpWedQKrnxTYsfsV5Nfl3jck6aPttdLOuyOyE2cJ8J9fC34b4RKaWw0"
)
DM_PAYLOAD = (
    "aes3:AwABAgMEBQYHAAAAAAAAAAEAAAGbdtqoABAREhMUFRYXGBkaG1fuS5oZqp_iKDt8HSHkrVrP1TfwA6EHv_POEL4dcN0Y50vAmWfk1jCb"
    "pQ1fHdyGZBJVMbg1gHLWNliA0a7qMprfkSE4OFHtIaKOO3XpZdDSzRZiVGdd1XTtd4kxCz0udoHzeQtGbHc7FSH-zzZXeVg3HqUvMPcDb7cCmV0o"
    "jpzV0jHhU9H79LO3G8cjNS5nHKC42nbedLRieIlVbXycuU69VndOtT6ArI-GzbYu1vJ9dPzJAg"
)


def vector_cipher(identity, peers=None) -> AesGcmCipher:
    randoms = iter([bytes.fromhex("0001020304050607"), bytes.fromhex("101112131415161718191a1b")])
    c = AesGcmCipher(bytes(32), now=lambda: 1767225600.0, random=lambda n: next(randoms), identity=identity)
    c.use_v2(V2_MASTER, V2_SALT)
    if peers:
        c.peer_agree = lambda nick: peers.get(nick.casefold())
    return c


def test_aes3_vectors_with_the_reference_implementation():
    assert ALICE.public.sign.hex() == "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
    assert BOB.public.agree.hex() == "675dd574ed7789310b3d2e7681f3790b466c773b1521fecf36577958371ea52f"
    assert fingerprint(ALICE.public) == "8aed a0be a029 48be c296 6852 b3d7 8537"
    assert safety_number(ALICE.public, BOB.public) == "46792 50910 08355 57315 35338 38505"
    assert vector_cipher(ALICE).encrypt("Hello, 世界!", Context("#Lobby", "Alice")) == ROOM_PAYLOAD
    assert vector_cipher(ALICE, {"bob": BOB.public.agree}).encrypt("psst", Context("bob", "Alice")) == DM_PAYLOAD
    opened = vector_cipher(BOB).open(DM_PAYLOAD, Context("bob", "Alice", history=True))
    assert (opened.text, opened.private, opened.signer) == ("psst", True, ALICE.public)


def test_aes3_vectors_with_an_independent_implementation():
    """From docs/encryption.md alone: hashlib, hmac and the raw primitives."""
    import hashlib
    import hmac
    import struct

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    def hkdf(ikm: bytes, info: bytes) -> bytes:
        prk = hmac.new(b"\0" * 32, ikm, hashlib.sha256).digest()
        return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()

    def field(b: bytes) -> bytes:
        return struct.pack(">H", len(b)) + b

    def open_(payload: str, label: bytes, sender: str, own_agree_private: bytes | None) -> str:
        env = base64.urlsafe_b64decode(payload[5:] + "=" * (-len(payload[5:]) % 4))
        header, sealed, keys, sig = env[:37], env[37:-160], env[-160:-64], env[-64:]
        aad = b"chatsvc/e2e/v3" + field(label) + field(sender.casefold().encode()) + header + keys
        Ed25519PublicKey.from_public_bytes(keys[:32]).verify(sig, b"chatsvc/e2e/v3/sig" + aad + sealed)
        base = hkdf(V2_MASTER, b"chatsvc/e2e/v3/key " + label)
        if keys[64:] != bytes(32):
            mine = X25519PrivateKey.from_private_bytes(own_agree_private)
            shared = mine.exchange(X25519PublicKey.from_public_bytes(keys[32:64]))
            assert shared.hex() == "7c79d7b5f31b9aac367477f5f7c7a68b5c44cac28ed5c902a59ec48c02956a6a"
            key = hkdf(shared + base, b"chatsvc/e2e/v3/dm " + label)
            assert key.hex() == "c702506e424896f53ec547f97df7665efd81677ed4e5d6fafb1191204ec3ec66"
        else:
            key = base
            assert key.hex() == "c7aa34987f2711404f05f29d7f9dec22ace6e19cb5666c0ae51ac22773aec0cb"
        return AESGCM(key).decrypt(header[25:], sealed, aad).decode()

    assert open_(ROOM_PAYLOAD, b"room:#lobby", "Alice", None) == "Hello, 世界!"
    assert open_(DM_PAYLOAD, b"dm:alice bob", "Alice", bytes(range(96, 128))) == "psst"
    digest = hashlib.sha256(b"chatsvc/e2e/v3/fingerprint" + ALICE.public.sign + ALICE.public.agree).hexdigest()
    assert " ".join(digest[i:i + 4] for i in range(0, 32, 4)) == "8aed a0be a029 48be c296 6852 b3d7 8537"


def test_a_topic_set_under_a_pinned_nick_with_another_key_is_not_shown_as_theirs():
    from chatsvc.client.session import TOPIC_MARKER

    s = Session("alice", ALICE).ready()
    s.server("CAPS join-proof topic max-line=65536 salt=" + SALT)
    s.server(f"MSG bob #lobby {from_(BOB, 'hi', '#lobby', 'bob', s.clock)}")
    s.display.take()
    forged = from_(MALLORY, TOPIC_MARKER + "new rules: pay mallory", "#lobby", "bob", s.clock)
    s.server(f"TOPIC #lobby bob {int(T0 * 1000)} {forged}")
    assert s.display.take() == ["! bob's key changed — not shown as bob; /verify bob"]
    real = from_(BOB, TOPIC_MARKER + "release Friday", "#lobby", "bob", s.clock)
    s.server(f"TOPIC #lobby bob {int(T0 * 1000)} {real}")
    assert s.display.take()[0].startswith("* topic of #lobby: release Friday (set by bob, ")


def test_a_new_salt_drops_every_key_of_the_old_master():
    # a relay restarted without a store announces a new salt: aes3 keys,
    # pairwise ones too, must come from the new master
    alice = signing_cipher(ALICE, peers={"bob": BOB.public.agree})
    alice.encrypt("warm the caches", Context("#lobby", "alice"))
    alice.encrypt("and this one", Context("bob", "alice"))
    new_master = bytes(range(100, 132))
    alice.use_v2(new_master, "bmV3c2FsdG5ld3NhbHRuZQ")
    bob = AesGcmCipher(MASTER, now=alice._now, identity=BOB)
    bob.use_v2(new_master, "bmV3c2FsdG5ld3NhbHRuZQ")
    assert bob.open(alice.encrypt("room", Context("#lobby", "alice")), Context("#lobby", "alice")).text == "room"
    assert bob.open(alice.encrypt("dm", Context("bob", "alice")), Context("bob", "alice")).text == "dm"


SESSION_DM_PAYLOAD = (
    "aes3:AwABAgMEBQYHAAAAAAAAAAEAAAGbdtqoABAREhMUFRYXGBkaG8dQr3-I6YbottQGBKiDuRa8wAxgA6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1f"
    "HdyGZBJVMbg1gHLWNliA0a7qMprfkSE4OFHtIaKOO3XpZdDSzRZiVHNoRdVOh94J1rsRSqcELFCkoBW9mQHRoAJvWVZTOhUZSKH6TQdPQfxkMr_puME_"
    "GHXpfGi6_LlLPnm7U2FWUMcBLXRd3PINVvB01plsdJwi_0UtMb1ObvJUMOa0c_dxBw"
)


def test_the_session_keyed_vector_and_forward_secrecy_per_session():
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    alice_session = X25519PrivateKey.from_private_bytes(bytes(range(192, 224)))
    bob_session = X25519PrivateKey.from_private_bytes(bytes(range(224, 256)))
    randoms = iter([bytes.fromhex("0001020304050607"), bytes.fromhex("101112131415161718191a1b")])
    alice = AesGcmCipher(bytes(32), now=lambda: 1767225600.0, random=lambda n: next(randoms), identity=ALICE,
                         session_key=alice_session)
    alice.use_v2(V2_MASTER, V2_SALT)
    bob_public_session = AesGcmCipher(bytes(32), identity=BOB, session_key=bob_session).session_public
    assert bob_public_session.hex() == "736845d54e87de09d6bb114aa7042c50a4a015bd9901d1a0026f5956533a1519"
    alice.peer_agree = lambda nick: BOB.public.agree
    alice.peer_session = lambda nick: bob_public_session
    assert alice.encrypt("psst", Context("bob", "Alice")) == SESSION_DM_PAYLOAD
    bob = AesGcmCipher(bytes(32), now=lambda: 1767225600.0, identity=BOB, session_key=bob_session)
    bob.use_v2(V2_MASTER, V2_SALT)
    bob.peer_session = lambda nick: alice.session_public
    assert bob.open(SESSION_DM_PAYLOAD, Context("bob", "Alice")).text == "psst"
    # Bob's session is over; someone with his identity file (and the
    # passphrase) and the recorded payload, but not that session's key:
    later = AesGcmCipher(bytes(32), now=lambda: 1767225600.0, identity=BOB)
    later.use_v2(V2_MASTER, V2_SALT)
    later.peer_session = lambda nick: alice.session_public
    with pytest.raises(DecryptError, match="earlier session of yours"):
        later.open(SESSION_DM_PAYLOAD, Context("bob", "Alice"))


def test_a_receiver_that_restarted_announces_its_new_session_and_the_next_message_reads():
    alice = Session("alice", ALICE).ready()
    bob = Session("bob", BOB, clock=alice.clock).ready()

    def deliver(line: str, to: Session, sender: str) -> None:
        to.server(line.replace(f"MSG {to.nick} ", f"MSG {sender} {to.nick} ", 1))

    alice.session.user_line("/msg bob one")
    deliver(alice.sent()[0], bob, "alice")  # key request
    deliver(bob.sent()[0], alice, "bob")  # answer
    alice.server("OK MSG bob")
    (first,) = alice.sent()
    deliver(first, bob, "alice")
    assert bob.display.take()[-1] == "[alice → you] one"
    # bob's client restarts: same identity and pinned keys, a new session
    bob = Session("bob", BOB, clock=alice.clock, known=bob.session.trust.known).ready()
    alice.session.user_line("/msg bob two")
    (second,) = alice.sent()  # alice still has bob's old session key
    deliver(second, bob, "alice")
    shown = bob.display.take()
    assert any("earlier session of yours" in line for line in shown)
    (request,) = bob.sent()  # bob's client asks again, saying which session is his now
    deliver(request, alice, "bob")
    (answer,) = alice.sent()  # ...and alice's answers with hers
    deliver(answer, bob, "alice")
    alice.session.user_line("/msg bob three")
    (third,) = alice.sent()
    deliver(third, bob, "alice")
    assert bob.display.take()[-1] == "[alice → you] three"


def test_a_key_request_carries_the_session_key_as_unpadded_base64url():
    # what the page parses (docs/encryption.md): a padded one was ignored there
    alice = Session("alice", ALICE).ready()
    alice.session.user_line("/msg bob hi")
    (request,) = alice.sent()
    opened = signing_cipher(BOB, alice.clock).open(request.split(" ", 2)[2], Context("bob", "alice"))
    marker, encoded = opened.text.split(":", 1)
    assert marker == "\x1fchatsvc-keyreq" and len(encoded) == 43 and "=" not in encoded
    assert base64.urlsafe_b64decode(encoded + "=") == alice.cipher.session_public


def test_a_client_without_identity_ignores_key_requests_quietly():
    # an unsigned client (the Caesar cipher has no identity; nor has an aes
    # cipher built without one) shows nothing for a key request, and sends nothing
    from tests.test_client_attacks import Session as PlainSession

    s = PlainSession("bob").ready()
    request = from_(ALICE, "\x1fchatsvc-keyreq:" + "A" * 43, "bob", "alice", s.clock)
    s.server(f"MSG alice bob {request}")
    assert s.sent() == [] and s.display.take() == []


def test_at_most_twenty_messages_are_held_from_a_changed_key():
    s = Session("alice", ALICE).ready()
    s.server(f"MSG bob #lobby {from_(BOB, 'first', '#lobby', 'bob', s.clock)}")
    for n in range(25):
        s.server(f"MSG bob #lobby {from_(MALLORY, f'held {n}', '#lobby', 'bob', s.clock)}")
    s.display.take()
    s.session.user_line("/verify bob")
    s.session.user_line("/verify bob yes")
    held = [line for line in s.display.take() if line.endswith("(held until /verify)")]
    assert held == [f"[#lobby] bob: held {n} (held until /verify)" for n in range(5, 25)]


def test_a_malformed_session_key_in_a_key_answer_is_ignored():
    alice = Session("alice", ALICE).ready()
    alice.session.user_line("/msg bob hello")
    alice.sent()
    for bad in ("", "not base64 !", "AAAA", "A" * 60):
        answer = from_(BOB, "\x1fchatsvc-key:" + bad, "alice", "bob", alice.clock)
        alice.server(f"MSG bob alice {answer}")
    assert alice.sent() == []  # still waiting: no session key came
    assert alice.session.sender.session_of("bob") is None
