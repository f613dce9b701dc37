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
    relay = relay_process("--store", str(tmp_path / "history.sqlite"))
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
    bob.wait_for("* alice added carol to #ops")  # the room's members follow
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
    alice.type("/op carol")
    carol.wait_for("* alice made carol an owner of #ops")
    carol.type("/rekey")  # an owner now
    alice.wait_for("* carol re-keyed #ops (epoch 3); moved with it")
    for who in (alice, carol, dave):
        assert who.finish()[0] == 0
    assert bob.finish()[0] == 0
    assert not any("may I read it" in line for line in alice.seen + bob.seen + carol.seen)
    assert not any("the plan" in line for line in dave.seen)
    assert not any("after the removal" in line for line in bob.seen + dave.seen)
    assert not any("still here" in line for line in alice.seen + carol.seen)

    # the relay restarts (its store keeps every epoch's room), and so does carol:
    # she rejoins the sealed room from her keyring (not the ordinary #ops her
    # --room names), and its history has every epoch, each read under its own proof
    relay.stop()
    relay.start()
    carol = clients(relay.port, "carol", "--room", "#ops", config_dir=carols)
    carol.wait_for_prefix("* in #ops: carol")  # (the earlier epochs' history comes before the current join)
    assert carol.finish()[0] == 0
    assert any("bob: the plan" in line for line in carol.seen)
    assert any("carol: after the removal" in line for line in carol.seen)  # (epoch 2, read under its own proof)
    assert not any("may I read it" in line or "still here" in line for line in carol.seen)


def test_a_link_lets_in_someone_who_has_no_passphrase(relay_process, clients):
    relay = relay_process("--web", "tcp:0:interface=127.0.0.1")
    alice = _in_ops(clients, relay.port, "alice")["alice"]
    alice.type("/seal")
    alice.wait_for_prefix("* #ops is sealed: ")
    alice.type("/invite-link")
    alice.wait_for_prefix("chatsvc://")
    # the relay serves the page (CAPS page=): the same link for a browser, which --join takes too
    link = alice.wait_for_prefix(f"http://127.0.0.1:{relay.web_port}/#join=")
    saved = alice.wait_for_prefix("* (also in ").split("also in ", 1)[1].split(", to copy whole")[0]
    assert link in open(saved).read().split("\n")  # a wrapped line does not copy whole: the file does
    erin = clients(None, "erin", "--join", link, passphrase=None)  # no HOST, no --port, no passphrase
    erin.wait_for_prefix("* in #ops: ")
    alice.wait_for_prefix("* erin joined #ops by link (")
    erin.type("hello, I came by link")
    alice.wait_for("[#ops] erin: hello, I came by link")
    alice.type("welcome")
    erin.wait_for("[#ops] alice: welcome")
    erin.type("/join #lobby")
    erin.wait_for_prefix("! you came in by invitation link, without the server's passphrase")
    erin.type("/part")  # leaving for good: not rejoined
    erin.wait_for("* #ops is no longer one of your sealed rooms; its owners can invite you again")
    assert alice.finish()[0] == 0 and erin.finish()[0] == 0


def _sealed_for(clients, port, owner, *invited, config=None):
    """``owner`` seals #ops and invites the others (who spoke first, so their keys are pinned)."""
    c = _in_ops(clients, port, owner, *invited, config=config)
    for nick in invited:
        c[nick].type(f"hi from {nick}")
        c[owner].wait_for(f"[#ops] {nick}: hi from {nick}")
    c[owner].type("/seal")
    c[owner].wait_for_prefix("* #ops is sealed: ")
    for nick in invited:
        c[owner].type(f"/invite {nick}")
        c[nick].wait_for_prefix(f"* {owner} invited you to the sealed room #ops")
        c[nick].wait_for_prefix("* in #ops: ")
    return c


def test_a_statement_signed_by_a_member_who_is_not_an_owner_is_refused_by_every_client(relay_process, clients, tmp_path):
    """carol's keys, used by a hacked client of hers: she makes herself owner and removes bob."""
    import json
    import socket

    from chatsvc.client import sealed
    from chatsvc.client.aesgcm import AesGcmCipher, join_proof
    from chatsvc.client.ciphers import Context
    from chatsvc.client.identity import Identity
    from chatsvc.client.sealed import unb64
    from tests.support import LineSocket

    relay = relay_process()
    carols = str(tmp_path / "carol")
    c = _sealed_for(clients, relay.port, "alice", "bob", "carol", config={"carol": carols})
    held = json.loads((tmp_path / "carol" / "chatsvc" / "sealed.json").read_text())["#ops"]
    carol = Identity.load_or_create(tmp_path / "carol" / "chatsvc" / "identity")[0]
    secret = unb64(held["secrets"]["1"])
    members = [m for m in sealed.members_of(held["statement"]) if m.nick != "bob"]
    new_secret = bytes(range(32))
    statement = sealed.make_statement("#ops", 2, held["statement"]["serial"] + 1, members,
                                      [carol.public.sign, *[unb64(o) for o in held["statement"]["owners"]]],
                                      new_secret, carol.public.sign)
    boxes = {m.sign: sealed.seal_box(carol, m, statement, new_secret) for m in members}
    text = sealed.control_text(statement, sealed.sign_statement(carol, statement), boxes)
    cipher = AesGcmCipher(bytes(32), identity=carol)
    cipher.use_v2(bytes(32), "any-salt-at-all")
    master = sealed.room_master(secret, "#ops", 1)
    cipher.room_master = lambda room: master
    hacked = LineSocket(socket.create_connection(("127.0.0.1", relay.port)))
    hacked.register("carol2")
    hacked.send(f"JOIN #ops {join_proof(master, '#ops')}\n")
    hacked.read_until("ENDNAMES #ops")
    hacked.send(f"MSG #ops {cipher.encrypt(text, Context(target='#ops', sender='carol2'))}\n")
    for nick in ("alice", "bob"):
        c[nick].wait_for("! refused a change to #ops from carol2: it was not signed and sent by an owner of the room")
    c["alice"].type("still epoch 1")
    c["bob"].wait_for("[#ops] alice: still epoch 1")  # bob is still in
    hacked.close()


def test_a_relay_that_replays_an_old_epochs_invitation_is_refused(relay_process, clients):
    from tests.hostile_relay import HostileRelay

    relay = relay_process()
    proxy = HostileRelay(relay.port)
    try:
        alice = _in_ops(clients, relay.port, "alice")["alice"]
        bob = clients(proxy.port, "bob", "--room", "#ops")  # bob's relay is the hostile one
        bob.wait_for_prefix("* in #ops: ")
        bob.type("hi from bob")
        alice.wait_for("[#ops] bob: hi from bob")
        alice.type("/seal")
        alice.wait_for_prefix("* #ops is sealed: ")
        alice.type("/invite bob")
        bob.wait_for_prefix("* alice invited you to the sealed room #ops")
        invitation = proxy.lines_seen(b"MSG alice bob ")[-1]  # (after the key exchange's)
        alice.type("/rekey")
        bob.wait_for("* alice re-keyed #ops (epoch 2); moved with it")
        bob.wait_for_prefix("* in #ops: ")
        proxy.inject(invitation)  # epoch 1's invitation, again
        bob.wait_for_prefix("! cannot read a message from alice (private): replayed message")
        alice.type("still epoch 2")
        bob.wait_for("[#ops] alice: still epoch 2")
        bob.type("/members")
        bob.wait_for_prefix("* #ops: 2 members, epoch 2")
    finally:
        proxy.close()

