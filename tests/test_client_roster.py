"""Who is where, ignores, unread counts, mentions, completion (pure parts of issue #17)."""

from __future__ import annotations

from chatsvc.client.completion import complete
from chatsvc.client.roster import Roster, mentions


def test_membership_follows_joins_parts_quits_and_renames():
    r = Roster()
    r.names("#a", ["alice", "bob"], first=True)
    r.joined("#b", "Bob")
    assert r.rooms_of("BOB") == ["#a", "#b"]
    r.renamed("bob", "robert")
    assert r.nicks_in("#a") == ["alice", "robert"]
    assert r.quit("robert") == ["#a", "#b"] and r.rooms_of("robert") == []
    r.parted("#a", "me", me=True)
    assert r.nicks_in("#a") == []


def test_an_ignored_person_stays_ignored_under_a_new_nick():
    r = Roster()
    r.ignored["bob"] = "bob"
    r.renamed("bob", "b0b")
    assert r.is_ignored("B0B") and not r.is_ignored("bob")


def test_unread_and_mention_counts():
    r = Roster()
    r.message_in("#dev", False)
    r.message_in("#dev", True)
    r.message_in("#ops", False)
    assert r.activity({"#dev": "#Dev", "#ops": "#ops"}) == "#Dev 2! #ops 1"
    r.read("#DEV")
    assert r.activity({}) == "#ops 1"


def test_mentions_are_whole_words_in_any_case():
    assert mentions("hey Tia, look", "tia")
    assert mentions("tia: ping", "TIA")
    assert not mentions("tiara is here", "tia")
    assert mentions("ask Ñandú.", "ñandú")
    assert not mentions("anything", None)


def test_completion():
    commands, rooms, nicks = ["join", "jump", "msg"], ["#lobby", "#lounge"], ["alice", "Albert", "bob"]
    assert complete("bo", commands, rooms, nicks) == ("bob: ", [])
    assert complete("hi bo", commands, rooms, nicks) == ("hi bob ", [])
    assert complete("/j", commands, rooms, nicks) == ("/j", ["/join", "/jump"])
    assert complete("/jo", commands, rooms, nicks) == ("/join ", [])
    assert complete("#lo", commands, rooms, nicks) == ("#lo", ["#lobby", "#lounge"])
    assert complete("al", commands, rooms, nicks) == ("al", ["Albert", "alice"])
    assert complete("zz", commands, rooms, nicks) == ("zz", [])
    assert complete("", commands, rooms, nicks) == ("", [])
