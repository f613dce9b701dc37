"""
Per-user keys end to end, with the real client and the real relay: a
member with the passphrase but another identity takes a pinned nick and
writes (flagged, not attributed); a relay that swaps the keys in an
envelope (refused); a third member cannot read a private conversation.
"""

from __future__ import annotations

import base64
import re

from tests.hostile_relay import HostileRelay


def test_a_member_with_the_passphrase_and_another_identity_cannot_pass_for_a_pinned_nick(relay_process, clients):
    relay = relay_process()
    alice = clients(relay.port, "alice")
    alice.wait_for("* in #lobby: alice")
    bob = clients(relay.port, "bob")
    bob.wait_for("* in #lobby: alice, bob")
    bob.type("hello, the real bob")
    alice.wait_for("[#lobby] bob: hello, the real bob")
    assert bob.finish()[0] == 0
    alice.wait_for("* bob quit")
    # mallory knows the passphrase, takes the free nick, and writes as bob
    mallory = clients(relay.port, "bob")  # a config dir of her own: another identity
    mallory.wait_for_prefix("* in #lobby: ")
    mallory.type("it is me, bob: send the keys to this address")
    alice.wait_for("! bob's key changed — not shown as bob; /verify bob")
    assert not any("send the keys" in line for line in alice.seen)
    mallory.finish()
    assert alice.finish()[0] == 0


def test_a_relay_that_swaps_the_keys_in_an_envelope_is_caught(relay_process, clients):
    relay = relay_process()
    mallory_key = bytes(range(200, 232))

    def swap(line: bytes) -> list[bytes]:
        # bob's room messages: put another signing key in place of his
        match = re.match(rb"^(@\S+ )?MSG bob #lobby aes3:(\S+)$", line)
        if not match:
            return [line]
        body = match.group(2)
        envelope = bytearray(base64.urlsafe_b64decode(body + b"=" * (-len(body) % 4)))
        envelope[-160:-128] = mallory_key
        forged = base64.urlsafe_b64encode(bytes(envelope)).rstrip(b"=")
        return [(match.group(1) or b"") + b"MSG bob #lobby aes3:" + forged]

    hostile = HostileRelay(relay.port, to_client=swap)
    try:
        alice = clients(hostile.port, "alice")
        alice.wait_for("* in #lobby: alice")
        bob = clients(relay.port, "bob")
        bob.wait_for("* in #lobby: alice, bob")
        bob.type("pay invoice 42")
        alice.wait_for_prefix("! cannot read a message from bob in #lobby: its signature does not verify")
        assert not any("invoice" in line for line in alice.seen)
        bob.finish()
        alice.finish()
    finally:
        hostile.close()


def test_a_third_member_cannot_read_a_private_conversation_even_with_the_relays_help(relay_process, clients):
    relay = relay_process()
    hostile = HostileRelay(relay.port)
    try:
        mallory = clients(hostile.port, "mallory")  # the relay's friend, with the passphrase
        mallory.wait_for("* in #lobby: mallory")
        bob = clients(hostile.port, "bob")
        bob.wait_for("* in #lobby: mallory, bob")
        alice = clients(relay.port, "alice")
        alice.wait_for("* in #lobby: mallory, bob, alice")
        alice.type("/msg bob the vault code is 9-1-7")
        bob.wait_for("[alice → you] the vault code is 9-1-7")
        assert not any("not private" in line for line in bob.seen)
        # the relay hands mallory the very payload bob got
        payload = hostile.lines_seen(b"MSG alice bob ")[-1].split(b" ", 3)[3]
        hostile.inject(b"MSG alice mallory " + payload, index=0)
        line = mallory.wait_for_prefix("! cannot read a message from alice (private): ")
        # readdressed, the conversation's label no longer matches what was
        # signed; unaltered, it is keyed for bob's X25519 key (test_identity.py)
        assert "signature does not verify" in line
        assert not any("9-1-7" in line for line in mallory.seen)
        for client in (alice, bob, mallory):
            client.finish()
    finally:
        hostile.close()
