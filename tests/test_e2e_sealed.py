"""
Sealed rooms (issue #25) end to end: real relay, real terminal clients.
The pure rules are tests/test_sealed.py (and the page's twin in node).
"""

from __future__ import annotations


def _in_ops(clients, port, *nicks, config: dict | None = None):
    made = {}
    for nick in nicks:
        made[nick] = c = clients(port, nick, "--room", "#ops", config_dir=(config or {}).get(nick))
        c.wait_for_prefix("* in #ops: ")
    return made


def test_invited_members_read_the_uninvited_and_the_removed_do_not(relay_process, clients, tmp_path):
    relay = relay_process()
    carols = str(tmp_path / "carol")
    c = _in_ops(clients, relay.port, "alice", "bob", "carol", "dave", config={"carol": carols})
    alice, bob, carol, dave = c["alice"], c["bob"], c["carol"], c["dave"]
    for nick in ("bob", "carol"):  # alice pins their keys from what they say
        c[nick].type(f"hi from {nick}")
        alice.wait_for(f"[#ops] {nick}: hi from {nick}")
    alice.type("/seal")
    alice.wait_for_prefix("* #ops is sealed: ")
    for nick in ("bob", "carol"):
        alice.type(f"/invite {nick}")
        c[nick].wait_for_prefix("* alice invited you to the sealed room #ops (owner key ")
        c[nick].wait_for_prefix("* in #ops: alice")
    bob.type("the plan")
    alice.wait_for("[#ops] bob: the plan")
    carol.wait_for("[#ops] bob: the plan")
    dave.type("may I read it?")  # the passphrase without an invitation: another room to the relay
    alice.type("/members")
    alice.wait_for_prefix("* #ops: 3 members, epoch 1")
    carol.type("/remove bob")
    carol.wait_for("! only owners of #ops can remove (alice)")

    alice.type("/remove bob")
    alice.wait_for_prefix("* removed bob from #ops: epoch 2")
    bob.wait_for("! alice removed you from #ops: nothing said there from now on is for you")
    carol.wait_for("* alice re-keyed #ops (epoch 2); moved with it")
    carol.wait_for_prefix("* in #ops: ")
    bob.type("still here?")  # in the old epoch's room: nobody hears it
    carol.type("after the removal")
    alice.wait_for("[#ops] carol: after the removal")
    alice.type("/members")
    alice.wait_for_prefix("* #ops: 2 members, epoch 2")
    for who in (alice, carol, dave):
        assert who.finish()[0] == 0
    assert bob.finish()[0] == 0
    assert not any("may I read it" in line for line in alice.seen + bob.seen + carol.seen)
    assert not any("the plan" in line for line in dave.seen)
    assert not any("after the removal" in line for line in bob.seen + dave.seen)
    assert not any("still here" in line for line in alice.seen + carol.seen)

    # carol starts again: she rejoins the sealed room from her keyring (not the
    # ordinary #ops her --room names), and its history has both epochs
    carol = clients(relay.port, "carol", "--room", "#ops", config_dir=carols)
    carol.wait_for_prefix("* in #ops: carol")
    carol.drain(1.0)
    assert any("bob: the plan" in line for line in carol.seen)
    assert any("carol: after the removal" in line for line in carol.seen)
    assert not any("may I read it" in line or "still here" in line for line in carol.seen)


def test_a_link_lets_in_someone_who_has_no_passphrase(relay_process, clients):
    relay = relay_process()
    alice = _in_ops(clients, relay.port, "alice")["alice"]
    alice.type("/seal")
    alice.wait_for_prefix("* #ops is sealed: ")
    alice.type("/invite-link")
    link = alice.wait_for_prefix("chatsvc://")
    erin = clients(None, "erin", "--join", link, passphrase=None)  # no HOST, no --port, no passphrase
    erin.wait_for_prefix("* in #ops: ")
    alice.wait_for_prefix("* erin joined #ops by link (")
    erin.type("hello, I came by link")
    alice.wait_for("[#ops] erin: hello, I came by link")
    alice.type("welcome")
    erin.wait_for("[#ops] alice: welcome")
    erin.type("/join #lobby")
    erin.wait_for_prefix("! you came in by invitation link, without the server's passphrase")
    assert alice.finish()[0] == 0 and erin.finish()[0] == 0
