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
    assert clients[0].received[-1] == "MSG bob #a over the wire"
    assert clients[1].received[-1] == "OK MSG #a"


def _session_pair():
    """Two real client sessions and the real relay, joined in memory."""
    from chatsvc.client.ciphers import CaesarCipher
    from chatsvc.client.protocol import ChatClientProtocol
    from chatsvc.client.session import ChatSession

    class Lines:
        def __init__(self):
            self.lines = []

        def show(self, text):
            self.lines.append(text)

        def set_prompt(self, text):
            pass

    factory = make_factory()
    sessions, pumps = [], []
    for nick in ("alice", "bob"):
        display = Lines()
        session = ChatSession(display, CaesarCipher(10), nick, "#lobby", "memory")
        session.display_lines = display.lines
        _, _, pump = iosim.connectedServerAndClient(
            lambda: factory.buildProtocol(None), lambda s=session: ChatClientProtocol(s)
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
    assert bob.display_lines[-1] == "[#lobby] alice: ¡Hola! ¿Sí? ñandú"
    assert alice.display_lines[-1] == "[bob → you] just you"
    bob.user_line("FIN")
    flush()
    assert alice.display_lines[-1] == "* bob quit"
    assert bob.done.called
