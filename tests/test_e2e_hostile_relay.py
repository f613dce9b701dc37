"""
Level 4: real clients behind a malicious relay (tests/hostile_relay.py, a
rewriting proxy in front of the real ``twistd chat``).  The attacks of the
security issue that were reproduced this way, now each refused.
"""

from __future__ import annotations

import time

from tests.hostile_relay import HostileRelay


def test_replayed_and_redirected_private_messages_are_refused(relay_process, clients):
    relay = relay_process()
    bob_relay = HostileRelay(relay.port)
    carol_relay = HostileRelay(relay.port)
    try:
        alice = clients(relay.port, "alice")
        bob = clients(bob_relay.port, "bob")
        carol = clients(carol_relay.port, "carol")
        for person in (alice, bob, carol):
            person.wait_for_prefix("* in #lobby: ")
        alice.type("/msg bob yes, go ahead and wire the 5000 EUR")
        bob.wait_for("[alice → you] yes, go ahead and wire the 5000 EUR")
        captured = bob_relay.lines_seen(b"MSG alice bob ")[0]

        # 1. the same line again, live, and marked as history
        bob_relay.inject(captured)
        bob.wait_for_prefix("! cannot read a message from alice (private): replayed message")
        now_ms = int(time.time() * 1000)
        bob_relay.inject(b"@history;time=%d " % now_ms + captured)
        bob.wait_for("! ignored a private message from alice marked as history (replayed?)")

        # 3. alice's message to bob, delivered to carol
        carol_relay.inject(captured)
        carol.wait_for("! ignored a private message from alice addressed to bob, not you")

        # 2. a room name carrying an escape sequence (window title)
        bob_relay.inject(b"JOIN #lobby\x1b]0;owned\x07 mallory")
        bob.wait_for_prefix("! ignored a malformed line from the server: invalid room name")

        for person in (alice, bob, carol):
            assert person.finish()[0] == 0
        assert sum("5000 EUR" in line for line in bob.seen) == 1
        assert not any("5000" in line for line in carol.seen)
        assert not any("\x1b" in line for line in bob.seen)
    finally:
        bob_relay.close()
        carol_relay.close()


def test_a_restarted_client_refuses_a_replay(relay_process, clients, tmp_path):
    relay = relay_process()
    hostile = HostileRelay(relay.port)
    config = str(tmp_path / "bob-config")
    try:
        bob = clients(hostile.port, "bob", config_dir=config)
        bob.wait_for("* in #lobby: bob")
        alice = clients(relay.port, "alice")
        alice.wait_for("* in #lobby: bob, alice")
        alice.type("meet at the north gate")
        bob.wait_for("[#lobby] alice: meet at the north gate")
        captured = hostile.lines_seen(b"@id=")[0]
        assert bob.finish()[0] == 0

        again = clients(hostile.port, "bob", config_dir=config)
        again.wait_for_prefix("* in #lobby: ")
        again.drain(1)  # the history shown on joining, marked as earlier
        hostile.inject(captured.replace(b"@id=", b"@id=9"))  # a newer id, the same message
        again.wait_for_prefix("! cannot read a message from alice in #lobby: replayed message")
        assert again.finish()[0] == 0
        live = [line for line in again.seen if line == "[#lobby] alice: meet at the north gate"]
        assert not live  # only ever shown as "(earlier, …)"
    finally:
        hostile.close()


def test_an_outsider_on_the_port_gets_no_ciphertext(relay_process, clients):
    relay = relay_process("--log-messages")
    alice = clients(relay.port, "alice")
    alice.wait_for("* in #lobby: alice")
    alice.type("the vault code is 2468")
    alice.wait_for("[#lobby] alice: the vault code is 2468")
    bob = clients(relay.port, "bob")
    bob.wait_for_prefix("[#lobby] alice: the vault code is 2468 (earlier, ")  # members get history

    outsider = relay.connect()
    outsider.register("eve")
    outsider.send("CAPS\n")
    assert outsider.readline().startswith("CAPS join-proof ")
    outsider.send("JOIN #lobby\nHISTORY #lobby last 100\nNAMES #lobby\n")
    outsider.send("JOIN #LOBBY AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n")
    outsider.send("PING done\n")
    lines = outsider.read_until("PONG done")
    assert not any("aes2:" in line or "alice" in line or "bob" in line for line in lines), lines
    outsider.send("PART #lobby\nJOIN #lobby\nMSG #lobby aes2:AgABforged\n")
    for person in (alice, bob):
        assert person.finish()[0] == 0
        assert not any("forged" in line or "cannot read" in line for line in person.seen)
