"""
Level 2/3: what an outsider or a hostile member can try against the relay
(issue "the relay cannot fool you", availability part), over
StringTransports and a fake clock.  Each test failed before its fix.
"""

from __future__ import annotations

from twisted.internet.address import IPv6Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from chatsvc import grammar
from chatsvc.history import History, RoomHistory, Record, SQLiteStore
from chatsvc.hub import UNREGISTERED_GRACE, Limits, origin_of
from chatsvc.doors import TRANSPORT_BUFFER
from tests.support import FakeClient, make_factory, registered

PROOF = "A" * 43  # what a client's join proof looks like (base64url of 32 bytes)
OTHER_PROOF = "B" * 43


# --- nicks that pass as others ---------------------------------------------------


def test_invisible_filler_in_a_nick_is_refused():
    factory = make_factory()
    client = FakeClient(factory)
    client.lines()
    client.send("NICK alice\u3164\n")
    assert client.lines()[0].startswith("ERROR nick-invalid ")
    assert not grammar.is_valid_nick("bob\u200b")
    assert grammar.is_valid_nick("李雷") and grammar.is_valid_nick("José")


def test_look_alike_nick_counts_as_taken_until_the_original_leaves():
    factory = make_factory()
    alice = registered(factory, "alice")
    mallory = FakeClient(factory, host="10.0.0.9")
    mallory.lines()
    for lookalike in ("\u0430lice", "ALICE", "al\u0131ce" if False else "a1ice", "ａlice"):
        mallory.send(f"NICK {lookalike}\n")
        assert mallory.lines()[0].startswith("ERROR nick-taken "), lookalike
    alice.send("QUIT\n")
    mallory.send("NICK \u0430lice\n")
    assert mallory.lines() == ["OK NICK \u0430lice"]


def test_nick_change_frees_the_old_look_alike_class():
    factory = make_factory()
    alice = registered(factory, "alice")
    alice.send("NICK alicia\n")
    other = registered(factory, "a1ice")
    assert other.protocol.conn.member.nick == "a1ice"


# --- echoes and output accounting --------------------------------------------------


def test_ping_token_is_capped():
    factory = make_factory()
    client = FakeClient(factory)
    client.lines()
    client.send("PING " + "x" * 65 + "\n")
    assert client.lines()[0].startswith("ERROR bad-syntax ")
    client.send("PING " + "x" * 64 + "\n")
    assert client.lines() == ["PONG " + "x" * 64]


def test_pong_replies_count_toward_the_send_queue():
    # Before: PONG bypassed the accounting, so PINGs from a client that
    # does not read grew the server's memory without bound.
    factory = make_factory(limits=Limits(max_sendq=TRANSPORT_BUFFER + 1000, flood_burst=0, flood_rate=0))
    client = FakeClient(factory)
    client.protocol.pauseProducing()
    client.send("PING " + "p" * 64 + "\n" * 1)
    for _ in range(30):
        client.send("PING " + "p" * 64 + "\n")
    assert client.transport.disconnected
    assert "ERROR sendq-exceeded" in client.transport.value().decode()


def test_errors_count_toward_the_send_queue():
    factory = make_factory(limits=Limits(max_sendq=TRANSPORT_BUFFER + 1000, flood_burst=0, flood_rate=0))
    client = FakeClient(factory)
    client.protocol.pauseProducing()
    for _ in range(30):
        client.send("FROB " + "f" * 30 + "\n")
    assert client.transport.disconnected


def test_all_clients_output_has_one_budget():
    limits = Limits(max_sendq=10 * 1024 * 1024, max_total_sendq=50_000)
    factory = make_factory(limits=limits)
    slow = [registered(factory, f"slow{i}", "#a") for i in range(3)]
    sender = registered(factory, "sender", "#a")
    for client in slow:
        client.protocol.pauseProducing()
    sender.send("MSG #a " + "x" * 20_000 + "\n")
    sender.send("MSG #a " + "x" * 20_000 + "\n")
    # 3 x 20 KB queued is over 50,000 (the hub hears in 16 KiB steps):
    # someone is cut off, the total is back under the budget, and the
    # sender is untouched.
    assert any(c.transport.disconnected for c in slow)
    assert factory.hub.total_queued <= 50_000
    assert not sender.transport.disconnecting


# --- connections that will not go away ------------------------------------------------


def test_timed_out_connection_is_aborted_if_it_does_not_close():
    clock = Clock()
    factory = make_factory(clock=clock, limits=Limits(register_timeout=5))
    lurker = FakeClient(factory)
    clock.advance(6)
    assert lurker.transport.disconnecting and not lurker.transport.disconnected
    clock.advance(Limits().close_grace)
    assert lurker.transport.disconnected  # aborted: its socket is freed


def test_full_server_drops_the_oldest_silent_connection_for_a_newcomer():
    clock = Clock()
    factory = make_factory(clock=clock, limits=Limits(max_clients=3, register_timeout=0, max_per_ip=0))
    silent = [FakeClient(factory, host=f"10.0.0.{i}") for i in range(3)]
    refused = FakeClient(factory, host="10.0.1.1")
    assert refused.lines()[0].startswith("ERROR server-full")  # all fresh: nobody dropped
    clock.advance(UNREGISTERED_GRACE)
    newcomer = FakeClient(factory, host="10.0.1.2")
    assert newcomer.lines()[0].startswith("HELLO ")
    assert silent[0].transport.disconnected
    assert not silent[1].transport.disconnecting


def test_registered_members_are_never_dropped_to_make_room():
    clock = Clock()
    factory = make_factory(clock=clock, limits=Limits(max_clients=2, max_per_ip=0))
    registered(factory, "a"), registered(factory, "b")
    clock.advance(60)
    assert FakeClient(factory, host="10.0.2.1").lines()[0].startswith("ERROR server-full")


def test_ipv6_addresses_count_per_64():
    assert origin_of("2001:db8:1:2:aaaa::1") == origin_of("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert origin_of("2001:db8:1:3::1") != origin_of("2001:db8:1:2::1")
    assert origin_of("::ffff:192.0.2.7") == "192.0.2.7"
    assert origin_of("192.0.2.7") == "192.0.2.7"
    factory = make_factory(limits=Limits(max_per_ip=2))

    def from_v6(host):
        transport = StringTransport(peerAddress=IPv6Address("TCP", host, 4000))
        proto = factory.buildProtocol(transport.getPeer())
        proto.makeConnection(transport)
        return transport.value().decode()

    assert from_v6("2001:db8::1").startswith("HELLO")
    assert from_v6("2001:db8::2").startswith("HELLO")
    assert from_v6("2001:db8::ffff:3").startswith("ERROR too-many-connections")
    assert from_v6("2001:db8:0:1::1").startswith("HELLO")


# --- amplification ----------------------------------------------------------------------


def test_rooms_reply_is_capped_and_charged():
    factory = make_factory(limits=Limits(flood_burst=50, flood_rate=20))
    makers = [registered(factory, f"m{i}", *(f"#r{i}-{j}" for j in range(50))) for i in range(3)]
    asker = registered(factory, "asker")
    asker.send("ROOMS\n")
    lines = asker.lines()
    assert len(lines) == 101 and lines[-1] == "ENDROOMS"
    # 101 lines cost 10 lines' worth of budget
    assert asker.protocol.conn.flood.bucket.tokens < 50 - 10
    assert makers


def test_history_count_must_be_ascii_decimal():
    factory = make_factory()
    client = registered(factory, "alice", "#q")
    client.send("HISTORY #q last \u00b2\n")
    assert client.lines()[0].startswith("ERROR bad-syntax ")
    client.send("HISTORY #q last \u0663\n")
    assert client.lines()[0].startswith("ERROR bad-syntax ")


def test_cids_of_different_senders_do_not_collide():
    factory = make_factory()
    alice = registered(factory, "alice", "#a")
    bob = registered(factory, "bob", "#a")
    carol = registered(factory, "carol", "#a")
    alice.send("@cid=same MSG #a from-alice\n")
    bob.send("@cid=same MSG #a from-bob\n")
    assert carol.lines() == ["MSG alice #a from-alice", "MSG bob #a from-bob"]
    alice.send("@cid=same MSG #a from-alice\n")  # alice's own resend: once only
    assert carol.lines() == []


# --- join proofs: outsiders get nothing -------------------------------------------------


def test_caps_announces_join_proof_limit_and_salt():
    factory = make_factory(salt="c2FsdHNhbHRzYWx0c2FsdA")
    client = FakeClient(factory)
    client.lines()
    client.send("CAPS\n")
    assert client.lines() == ["CAPS join-proof streams topic max-line=65536 salt=c2FsdHNhbHRzYWx0c2FsdA"]


def test_outsider_without_the_proof_sees_no_messages_and_no_history():
    factory = make_factory()
    alice = registered(factory, "alice")
    bob = registered(factory, "bob")
    alice.send(f"JOIN #lobby {PROOF}\n")
    bob.send(f"JOIN #lobby {PROOF}\n")
    alice.send("MSG #lobby secret-ciphertext\n")
    outsider = registered(factory, "eve")
    for attempt in ("JOIN #lobby", f"JOIN #lobby {OTHER_PROOF}"):
        outsider.send(attempt + "\n")
        outsider.send("HISTORY #lobby last 100\n")
        outsider.send("PART #lobby\n")
    seen = "\n".join(outsider.lines())
    assert "secret-ciphertext" not in seen and "alice" not in seen and "bob" not in seen
    alice.lines(), bob.lines()
    # and what eve posts reaches neither of them
    outsider.send(f"JOIN #lobby {OTHER_PROOF}\nMSG #lobby junk\n")
    assert alice.lines() == [] and bob.lines() == []
    # members see each other as usual
    bob.send("MSG #lobby hi\n")
    assert alice.lines() == ["MSG bob #lobby hi"]


def test_squatting_a_name_does_not_lock_out_its_real_members():
    factory = make_factory()
    squatter = registered(factory, "squatter")
    squatter.send(f"JOIN #lobby {OTHER_PROOF}\n")
    alice = registered(factory, "alice")
    alice.send(f"JOIN #lobby {PROOF}\n")
    assert alice.lines()[:2] == ["JOIN #lobby alice", "NAMES #lobby alice"]


def test_malformed_proof_and_required_proof():
    factory = make_factory(require_proof=True)
    client = registered(factory, "alice")
    client.send("JOIN #a not/base64\n")
    assert client.lines()[0].startswith("ERROR bad-syntax ")
    client.send("JOIN #a\n")
    assert client.lines()[0].startswith("ERROR proof-required ")
    client.send(f"JOIN #a {PROOF}\n")
    assert client.lines()[0] == "JOIN #a alice"


# --- history: one origin cannot wipe a room -----------------------------------------------


def test_flood_from_one_origin_pushes_out_only_its_own_history():
    history = RoomHistory(limit=100)
    for i in range(1, 41):
        history.add(Record(i, "alice", f"real-{i}", 0, None, origin="10.0.0.1"))
    for i in range(41, 1000):
        history.add(Record(i, "junk", "x" * 100, 0, None, origin="10.6.6.6"))
    kept = [r.payload for r in history.records]
    assert sum(p.startswith("real-") for p in kept) == 40
    assert len(kept) == 100


def test_store_is_bounded_in_all(tmp_path):
    done = []
    store = SQLiteStore(str(tmp_path / "h.db"), 1000, lambda f, e: done.append(e), max_bytes=50_000)
    store.start()
    history = History(1000, 0, store)
    for room in range(20):
        for i in range(10):
            record = history.new_record(f"#r{room} proof{room}", "x", "p" * 1000, room * 100 + i, None)
            store.append(f"#r{room} proof{room}", record, lambda error: None)
    store.stop()
    assert store.bytes <= 50_000
    reopened = SQLiteStore(str(tmp_path / "h.db"), 1000, lambda f, e: None)
    assert reopened.bytes == store.bytes
    # the newest rooms survive, the oldest went first
    assert reopened.load("#r19 proof19", 1000).records
    assert not reopened.load("#r0 proof0", 1000).records


def test_store_keeps_one_salt(tmp_path):
    path = str(tmp_path / "h.db")
    first = SQLiteStore(path, 10, lambda f, e: None).salt(lambda: "first-salt")
    again = SQLiteStore(path, 10, lambda f, e: None).salt(lambda: "other-salt")
    assert first == again == "first-salt"
