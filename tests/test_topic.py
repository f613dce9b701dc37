"""Room topics on the relay: opaque payloads, kept like history, shown on join (protocol.md, TOPIC)."""

from __future__ import annotations

from chatsvc import relay as relay_module
from tests.support import make_factory, registered


def test_a_topic_is_set_shown_to_all_and_to_joiners_and_kept_while_the_room_is_empty():
    factory = make_factory()
    alice = registered(factory, "alice", "#a")
    bob = registered(factory, "bob", "#a")
    alice.lines()
    alice.send("TOPIC #a\n")
    assert alice.lines() == ["TOPIC #a"]  # none yet
    alice.send("TOPIC #a aes2:CIPHERTEXT\n")
    assert alice.lines() == ["TOPIC #a alice 0 aes2:CIPHERTEXT"]
    assert bob.lines() == ["TOPIC #a alice 0 aes2:CIPHERTEXT"]
    for client in (alice, bob):
        client.send("PART #a\n")
    carol = registered(factory, "carol")
    carol.send("JOIN #a\n")
    assert carol.lines() == ["JOIN #a carol", "NAMES #a carol", "ENDNAMES #a", "TOPIC #a alice 0 aes2:CIPHERTEXT"]


def test_topics_are_per_proof_and_need_membership():
    factory = make_factory()
    alice = registered(factory, "alice")
    alice.send("JOIN #a " + "P" * 43 + "\n")
    alice.send("TOPIC #a aes2:SECRET\n")
    eve = registered(factory, "eve", "#a")  # the same name without the proof: another room
    eve.send("TOPIC #a\n")
    assert eve.lines() == ["TOPIC #a"]
    eve.send("TOPIC #b aes2:X\n")
    assert eve.lines()[0].startswith("ERROR not-in-room ")


def test_a_topic_is_bounded_and_topics_are_few():
    factory = make_factory()
    alice = registered(factory, "alice", "#a")
    alice.send("TOPIC #a " + "x" * 3000 + "\n")
    assert alice.lines()[0].startswith("ERROR bad-syntax TOPIC payload")
    relay = factory.relay
    for n in range(relay_module.MAX_TOPICS + 5):
        relay.topics[f"#r{n}"] = ("x", "0", "y")
        relay.topics.move_to_end(f"#r{n}")
    alice.send("TOPIC #a aes2:Z\n")
    assert len(relay.topics) <= relay_module.MAX_TOPICS and "#a" in relay.topics


def test_caps_announce_topics():
    factory = make_factory()
    alice = registered(factory, "alice")
    alice.send("CAPS\n")
    assert " topic " in alice.lines()[0] + " "


def test_topics_survive_a_restart_with_a_store(tmp_path):
    from chatsvc.history import History, SQLiteStore

    def relay_on(path):
        store = SQLiteStore(str(path), 100, lambda f, *a: f(*a))
        return make_factory(history=History(100, 0, store)), store

    factory, store = relay_on(tmp_path / "h.sqlite")
    store.start()
    alice = registered(factory, "alice", "#a")
    alice.send("TOPIC #a aes2:KEPT\n")
    alice.send("TOPIC #a aes2:KEPT2\n")
    store.stop()
    factory, store = relay_on(tmp_path / "h.sqlite")
    bob = registered(factory, "bob")
    bob.send("JOIN #a\n")
    assert bob.lines()[-1] == "TOPIC #a alice 0 aes2:KEPT2"
    # only the latest MAX_TOPICS are kept on disk too
    store.start()
    for n in range(5):
        store.save_topic(f"#r{n}", ("x", "0", "y"), 3, lambda e: None)
    store.stop()
    assert [room for room, _ in relay_on(tmp_path / "h.sqlite")[1].topics(100)] == ["#r2", "#r3", "#r4"]
