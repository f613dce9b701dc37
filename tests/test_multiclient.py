"""Level 3: several clients connected to one relay, in memory."""

from __future__ import annotations

from twisted.protocols.basic import LineOnlyReceiver
from twisted.test import iosim

from tests.support import FakeClient, make_factory, registered


def test_room_message_reaches_other_members_only():
    factory = make_factory()
    alice = registered(factory, "alice", "#a")
    bob = registered(factory, "bob", "#a")
    carol = registered(factory, "carol", "#other")
    alice.lines()
    alice.send("MSG #A opaque+payload==\n")
    assert alice.lines() == ["OK MSG #a"]
    assert bob.lines() == ["MSG alice #a opaque+payload=="]
    assert carol.lines() == []


def test_join_and_part_notices_reach_all_members():
    factory = make_factory()
    alice = registered(factory, "alice", "#a")
    bob = registered(factory, "bob")
    bob.send("JOIN #a\n")
    assert alice.lines() == ["JOIN #a bob"]
    assert bob.lines() == ["JOIN #a bob", "NAMES #a alice bob", "ENDNAMES #a"]
    bob.send("PART #a bye\n")
    assert alice.lines() == ["PART #a bob bye"]
    assert bob.lines() == ["PART #a bob bye"]


def test_private_message():
    factory = make_factory()
    alice = registered(factory, "alice")
    bob = registered(factory, "Bob")
    alice.send("MSG BOB secret stuff\n")
    assert alice.lines() == ["OK MSG Bob"]
    assert bob.lines() == ["MSG alice Bob secret stuff"]


def test_nick_change_told_once_to_each_sharer():
    factory = make_factory()
    alice = registered(factory, "alice", "#a", "#b")
    bob = registered(factory, "bob", "#a", "#b")
    carol = registered(factory, "carol", "#c")
    alice.lines()
    alice.send("NICK Alicia\n")
    assert alice.lines() == ["OK NICK Alicia", "NICK alice Alicia"]
    assert bob.lines() == ["NICK alice Alicia"]
    assert carol.lines() == []
    # the old nick is free again, the new one is taken
    dave = FakeClient(factory)
    dave.send("NICK alice\nNICK alicia\n")
    lines = dave.lines()
    assert lines[1] == "OK NICK alice"
    assert lines[2].startswith("ERROR nick-taken ")


def test_nick_case_change_is_allowed():
    factory = make_factory()
    alice = registered(factory, "alice", "#a")
    alice.send("NICK ALICE\n")
    assert alice.lines() == ["OK NICK ALICE", "NICK alice ALICE"]


def test_quit_told_once_to_sharers_and_room_cleanup():
    factory = make_factory()
    alice = registered(factory, "alice", "#a", "#b")
    bob = registered(factory, "bob", "#a", "#b")
    alice.lines()
    bob.send("QUIT see you\n")
    assert alice.lines() == ["QUIT bob see you"]
    alice.send("NAMES #a\n")
    assert alice.lines() == ["NAMES #a alice", "ENDNAMES #a"]


def test_drop_gives_connection_lost_and_empty_rooms_vanish():
    factory = make_factory()
    alice = registered(factory, "alice", "#a")
    bob = registered(factory, "bob", "#a", "#solo")
    alice.lines()
    bob.drop()
    assert alice.lines() == ["QUIT bob connection lost"]
    alice.send("ROOMS\n")
    assert alice.lines() == ["ROOM #a 1", "ENDROOMS"]


def test_bad_input_from_one_client_does_not_affect_others():
    factory = make_factory(max_line=64)
    alice = registered(factory, "alice", "#a")
    bob = registered(factory, "bob", "#a")
    alice.lines()
    bob.send(b"\xff\n" + b"FROB\n" + b"JOIN\n" + b"z" * 200)
    assert bob.closed
    assert alice.lines() == []  # nothing of bob's garbage reached alice
    bob.drop()
    assert alice.lines() == ["QUIT bob line too long"]
    carol = registered(factory, "carol", "#a")
    carol.send("MSG #a hi\n")
    assert alice.lines() == ["JOIN #a carol", "MSG carol #a hi"]


def test_interleaved_senders_each_line_intact():
    factory = make_factory()
    senders = [registered(factory, f"s{i}", "#a") for i in range(4)]
    listener = registered(factory, "listener", "#a")
    for s in senders:
        s.lines()
    # Each sender's line arrives in pieces, interleaved with the others'.
    chunks = {i: [f"MSG #a m{i}-{n} ".encode() + b"x" * 50 + b"\n" for n in range(20)] for i in range(4)}
    streams = {i: b"".join(c) for i, c in chunks.items()}
    pos = dict.fromkeys(streams, 0)
    step = 7
    while any(pos[i] < len(streams[i]) for i in streams):
        for i, s in enumerate(senders):
            piece = streams[i][pos[i] : pos[i] + step]
            pos[i] += step
            if piece:
                s.send(piece)
    got = listener.lines()
    assert len(got) == 80
    for i in range(4):
        mine = [line for line in got if line.startswith(f"MSG s{i} ")]
        assert mine == [f"MSG s{i} #a m{i}-{n} " + "x" * 50 for n in range(20)]


class _LineCollector(LineOnlyReceiver):
    delimiter = b"\n"

    def connectionMade(self):
        self.received = []

    def lineReceived(self, line):
        self.received.append(line.decode())


def test_over_loopback_pump():
    """Two raw clients and the server joined by iosim's in-memory pipes."""
    factory = make_factory()
    pumps = []
    clients = []
    for nick in ("alice", "bob"):
        client = _LineCollector()
        client, server, pump = iosim.connectedServerAndClient(
            lambda: factory.buildProtocol(None), lambda c=client: c
        )
        client.sendLine(f"NICK {nick}".encode())
        client.sendLine(b"JOIN #a")
        pump.flush()
        pumps.append(pump)
        clients.append(client)
    clients[1].sendLine(b"MSG #a over the wire")
    for pump in pumps + pumps:  # bob -> server, then server -> alice
        pump.flush()
    assert clients[0].received[-1] == "@id=1 MSG bob #a over the wire"
    assert clients[1].received[-1] == "OK MSG #a 1"


def _session_pair():
    """Two real client sessions and the real relay, joined in memory."""
    from chatsvc.client.ciphers import CaesarCipher
    from chatsvc.client.protocol import ChatClientProtocol
    from chatsvc.client.session import ChatSession
    from twisted.internet.task import Clock

    from tests.displays import RecordingDisplay as Lines

    factory = make_factory()
    sessions, pumps = [], []
    for nick in ("alice", "bob"):
        display = Lines()
        session = ChatSession(display, CaesarCipher(10), nick, "#lobby", "memory", clock=Clock())
        session.display_lines = display.lines
        _, _, pump = iosim.connectedServerAndClient(
            lambda: factory.buildProtocol(None), lambda s=session: ChatClientProtocol(s.events)
        )
        sessions.append(session)
        pumps.append(pump)

    def flush():
        for _ in range(3):
            for pump in pumps:
                pump.flush()

    flush()
    return sessions, flush


def test_client_sessions_talk_through_the_relay():
    (alice, bob), flush = _session_pair()
    assert alice.ready and bob.ready
    alice.user_line("¡Hola! ¿Sí? ñandú")
    bob.user_line("/msg alice just you")
    flush()
    assert "[#lobby] alice: ¡Hola! ¿Sí? ñandú" in bob.display_lines
    assert bob.display_lines[-1] == "[you → alice] just you"  # once the relay delivered it
    assert alice.display_lines[-1] == "[bob → you] just you"
    bob.user_line("FIN")
    flush()
    assert alice.display_lines[-1] == "* bob quit"
    assert bob.done.called


# --- large rooms ---------------------------------------------------------------


def test_large_room_replaces_notices_by_counts():
    factory = make_factory(large_room=3)
    a = registered(factory, "a", "#big")
    b = registered(factory, "b", "#big")
    a.lines()
    c = registered(factory, "c")
    c.send("JOIN #big\n")
    # the third member makes the room large: only c hears of its join
    assert c.lines() == ["JOIN #big c", "MEMBERS #big 3", "ENDNAMES #big"]
    assert a.lines() == [] and b.lines() == []
    factory.relay.announce_counts()
    for member in (a, b, c):
        assert member.lines() == ["MEMBERS #big 3"]
    factory.relay.announce_counts()  # nothing changed: nothing sent
    assert a.lines() == []
    # messages flow as usual; NAMES still lists everyone
    a.send("MSG #big hi\nNAMES #big\n")
    assert c.lines() == ["MSG a #big hi"]
    assert a.lines() == ["OK MSG #big", "NAMES #big a b c", "ENDNAMES #big"]
    # a leaving member is not announced one by one either
    c.send("PART #big\n")
    assert c.lines() == ["PART #big c"]
    assert a.lines() == []
    # back under the threshold, the room is an ordinary one again
    b.drop()
    assert a.lines() == ["QUIT b connection lost"]


def test_large_room_nick_change_reaches_only_small_room_sharers():
    factory = make_factory(large_room=3)
    a = registered(factory, "a", "#big", "#small")
    b = registered(factory, "b", "#big")
    registered(factory, "b2", "#big")
    c = registered(factory, "c", "#small")
    b.lines()
    a.lines()
    a.send("NICK alpha\n")
    assert a.lines() == ["OK NICK alpha", "NICK a alpha"]
    assert c.lines() == ["NICK a alpha"]
    assert b.lines() == []


def test_mass_join_of_a_large_room_is_linear():
    factory = make_factory(large_room=50)
    clients = [registered(factory, f"u{i}", "#crowd") for i in range(400)]
    total = sum(len(c.transport.value()) for c in clients)
    # each client got its own join reply plus at most the notices of the
    # first 50 joiners: not 400 * 400 / 2 lines
    assert total < 400 * 60 * 20


def test_members_are_announced_periodically_by_the_factory():
    from twisted.internet.task import Clock

    clock = Clock()
    factory = make_factory(clock=clock, large_room=2)
    factory.startFactory()
    a = registered(factory, "a", "#big")
    registered(factory, "b", "#big")
    a.lines()
    clock.advance(5)
    assert a.lines() == ["MEMBERS #big 2"]
    factory.stopFactory()
    assert clock.getDelayedCalls() == [] or all(not c.active() for c in clock.getDelayedCalls() if "announce" in repr(c))
