"""
The holes of the trust-core issue, each against the real relay and the
real terminal client (the page's are in tests/test_browser.py): an
outsider gets no reply to guess the passphrase against (1); a dropped key
answer no longer downgrades private messages (2); a look-alike of a pinned
member who is offline is flagged (3); your own nick used while you were
away is not shown as yours (4).
"""

from __future__ import annotations

import base64
import os
import re

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from chatsvc.client.aesgcm import AesGcmCipher
from chatsvc.client.ciphers import Context
from chatsvc.client.identity import Identity
from tests.hostile_relay import HostileRelay

LOOKALIKE = "b\u043eb"  # bob with a Cyrillic о


def outsider_payload(salt: str, sender: str, target: str) -> str:
    """What someone without the passphrase can make: a throwaway key, a random peer key."""
    cipher = AesGcmCipher(os.urandom(32), identity=Identity.generate())
    cipher.use_v2(os.urandom(32), salt)  # not the passphrase's key: they do not have it
    stranger = X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    cipher.peer_agree = lambda nick: stranger
    return cipher.encrypt("hello, anyone there?", Context(target=target, sender=sender), use_session=False)


def outsider(relay, nick: str):
    """A raw connection with no passphrase, registered as ``nick``; and the relay's salt."""
    eve = relay.connect()
    eve.register(nick)
    eve.send("CAPS\n")
    salt = re.search(r"salt=(\S+)", eve.readline()).group(1)
    return eve, salt


def nothing_sent_to(eve, token: str) -> list[str]:
    eve.send(f"PING {token}\n")
    return [line for line in eve.read_until(f"PONG {token}") if line.startswith("MSG ")]


def test_hole_1_an_outsiders_private_message_gets_no_reply_to_guess_against(relay_process, clients):
    relay = relay_process("--require-proof")
    alice = clients(relay.port, "alice")
    alice.wait_for("* in #lobby: alice")
    eve, salt = outsider(relay, "eve")
    eve.send(f"MSG alice {outsider_payload(salt, 'eve', 'alice')}\n")
    eve.expect("OK MSG alice")
    alice.wait_for_prefix("! cannot read a message from eve (private): it is keyed for someone else's key")
    alice.type("/rooms")  # the relay answers in order: anything alice sent before is with eve by then
    alice.wait_for_prefix("* rooms: ")
    assert nothing_sent_to(eve, "after") == []
    assert alice.finish()[0] == 0


def test_hole_2_a_dropped_key_answer_is_asked_for_again_never_downgraded(relay_process, clients):
    relay = relay_process()
    dropped = []

    def drop_first_answer(line: bytes) -> list[bytes]:
        if line.startswith(b"MSG bob alice ") and not dropped:
            dropped.append(line)
            return []
        return [line]

    hostile = HostileRelay(relay.port, to_client=drop_first_answer)
    try:
        alice = clients(hostile.port, "alice")
        alice.wait_for("* in #lobby: alice")
        bob = clients(relay.port, "bob")
        bob.wait_for("* in #lobby: alice, bob")
        alice.type("/msg bob the door code is 4711")
        bob.wait_for("[alice → bob] the door code is 4711".replace("alice → bob", "alice → you"), timeout=30)
        assert dropped  # the relay did drop bob's first answer; alice asked again after 5 s
        assert not any("not private" in line for line in bob.seen)
        assert not any("passphrase alone" in line or "without forward secrecy" in line for line in alice.seen)
        assert alice.finish()[0] == 0 and bob.finish()[0] == 0
    finally:
        hostile.close()


def test_hole_3_a_lookalike_of_a_pinned_member_who_is_offline_is_flagged(relay_process, clients):
    relay = relay_process()
    alice = clients(relay.port, "alice")
    alice.wait_for("* in #lobby: alice")
    bob = clients(relay.port, "bob")
    bob.wait_for("* in #lobby: alice, bob")
    bob.type("hi, the real bob")
    alice.wait_for("[#lobby] bob: hi, the real bob")
    assert bob.finish()[0] == 0
    alice.wait_for("* bob quit")
    mallory = clients(relay.port, LOOKALIKE)  # the relay's skeleton check only holds while bob is connected
    mallory.wait_for_prefix("* in #lobby: ")
    mallory.type("it is me, bob, from my new laptop")
    alice.wait_for(f"! {LOOKALIKE} is not bob: a look-alike name with another key")
    alice.wait_for(f"[#lobby] {LOOKALIKE} (not bob: a look-alike): it is me, bob, from my new laptop")
    assert not any(line.startswith(f"* {LOOKALIKE}'s key") for line in alice.seen)  # never a plain first sighting
    mallory.finish()
    assert alice.finish()[0] == 0


def test_hole_4_your_own_nick_used_while_you_were_away_is_not_yours(relay_process, clients, tmp_path):
    relay = relay_process()
    config = str(tmp_path / "alice-config")
    alice = clients(relay.port, "alice", config_dir=config)
    alice.wait_for("* in #lobby: alice")
    alice.type("hello from the real alice")
    alice.wait_for("[#lobby] alice: hello from the real alice")
    assert alice.finish()[0] == 0
    mallory = clients(relay.port, "alice")  # another identity, the nick now free
    mallory.wait_for_prefix("* in #lobby: ")
    mallory.type("I resign, effective today")
    mallory.type("/topic alice resigned")
    mallory.wait_for_prefix("* topic of #lobby: alice resigned")
    assert mallory.finish()[0] == 0
    back = clients(relay.port, "alice", config_dir=config)  # alice again: her identity
    back.wait_for_prefix("! a message under your nick alice signed with another key — not shown as yours")
    back.wait_for_prefix("[#lobby] alice: hello from the real alice (earlier, ")
    back.type("/rooms")
    back.wait_for_prefix("* rooms: ")
    assert back.finish()[0] == 0
    assert not any("resign" in line for line in back.seen)
    assert not any(line.startswith("* alice's key") for line in back.seen)
