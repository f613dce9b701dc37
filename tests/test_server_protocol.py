"""Level 2: one server protocol over a StringTransport -- every command,
reply and error of protocol v1."""

from __future__ import annotations

import pytest
from twisted.logger import LogLevel, capturedLogs

from tests.support import FakeClient, make_factory, registered


@pytest.fixture
def factory():
    return make_factory()


def test_hello_on_connect(factory):
    client = FakeClient(factory)
    [hello] = client.lines()
    words = hello.split(" ", 3)
    assert words[:3] == ["HELLO", "chatsvc", "1"]
    assert len(words) == 4 and words[3]


def test_nick_registers(factory):
    client = FakeClient(factory)
    client.lines()
    client.send("NICK alice\n")
    assert client.lines() == ["OK NICK alice"]


@pytest.mark.parametrize("bad", ["-x", "a" * 33, "bad!nick", "#room"])
def test_nick_invalid(factory, bad):
    client = FakeClient(factory)
    client.lines()
    client.send(f"NICK {bad}\n")
    [line] = client.lines()
    assert line.startswith("ERROR nick-invalid ")
    assert not client.closed


def test_nick_taken_case_insensitively(factory):
    registered(factory, "Alice")
    client = FakeClient(factory)
    client.lines()
    client.send("NICK aLICE\n")
    [line] = client.lines()
    assert line.startswith("ERROR nick-taken ")


def test_crlf_accepted(factory):
    client = FakeClient(factory)
    client.lines()
    client.send("NICK alice\r\n")
    assert client.lines() == ["OK NICK alice"]


@pytest.mark.parametrize(
    "line", ["JOIN #a", "PART #a", "MSG #a hi", "MSG bob hi", "NAMES #a", "ROOMS"]
)
def test_commands_need_registration(factory, line):
    client = FakeClient(factory)
    client.lines()
    client.send(line + "\n")
    [reply] = client.lines()
    assert reply.startswith("ERROR not-registered ")


def test_ping_before_registration(factory):
    client = FakeClient(factory)
    client.lines()
    client.send("PING abc\nping\n")
    assert client.lines() == ["PONG abc", "PONG"]


def test_quit_before_registration_closes(factory):
    client = FakeClient(factory)
    client.lines()
    client.send("QUIT\n")
    assert client.closed


def test_join_sends_join_then_names(factory):
    alice = registered(factory, "alice")
    alice.send("JOIN #Lobby\n")
    assert alice.lines() == ["JOIN #Lobby alice", "NAMES #Lobby alice", "ENDNAMES #Lobby"]


def test_join_again_only_resends_names(factory):
    alice = registered(factory, "alice", "#lobby")
    alice.send("JOIN #LOBBY\n")
    assert alice.lines() == ["NAMES #lobby alice", "ENDNAMES #lobby"]


@pytest.mark.parametrize("room", ["lobby", "#", "#a b", "#" + "x" * 65, "#-x"])
def test_join_invalid_room(factory, room):
    alice = registered(factory, "alice")
    alice.send(f"JOIN {room}\n")
    [line] = alice.lines()
    assert line.startswith(("ERROR room-invalid ", "ERROR bad-syntax "))


def test_join_invalid_room_code(factory):
    alice = registered(factory, "alice")
    alice.send("JOIN lobby\n")
    assert alice.lines()[0].startswith("ERROR room-invalid ")


def test_part(factory):
    alice = registered(factory, "alice", "#a")
    alice.send("PART #A gone for lunch\n")
    assert alice.lines() == ["PART #a alice gone for lunch"]
    alice.send("PART #a\n")
    assert alice.lines()[0].startswith("ERROR not-in-room ")


def test_part_without_reason(factory):
    alice = registered(factory, "alice", "#a")
    alice.send("PART #a\n")
    assert alice.lines() == ["PART #a alice"]


def test_msg_to_room_acknowledged_not_echoed(factory):
    alice = registered(factory, "alice", "#a")
    alice.send("MSG #a c2VjcmV0 with spaces\n")
    assert alice.lines() == ["OK MSG #a"]


def test_msg_errors(factory):
    alice = registered(factory, "alice", "#a")
    alice.send("MSG #b hi\nMSG nobody hi\nMSG #a\nMSG\n")
    lines = alice.lines()
    assert [line.split()[1] for line in lines] == ["not-in-room", "no-such-nick", "bad-syntax", "bad-syntax"]


def test_names_and_errors(factory):
    alice = registered(factory, "alice", "#a")
    alice.send("NAMES #a\nNAMES #b\nNAMES\n")
    lines = alice.lines()
    assert lines[:2] == ["NAMES #a alice", "ENDNAMES #a"]
    assert lines[2].startswith("ERROR not-in-room ")
    assert lines[3].startswith("ERROR bad-syntax NAMES")


def test_rooms(factory):
    alice = registered(factory, "alice", "#a", "#b")
    registered(factory, "bob", "#b")
    alice.lines()
    alice.send("ROOMS\n")
    assert alice.lines() == ["ROOM #a 1", "ROOM #b 2", "ENDROOMS"]


def test_rooms_empty(factory):
    alice = registered(factory, "alice")
    alice.send("ROOMS\n")
    assert alice.lines() == ["ENDROOMS"]


def test_unknown_command(factory):
    alice = registered(factory, "alice")
    alice.send("frob a b c\n")
    [line] = alice.lines()
    assert line.startswith("ERROR unknown-command frob ")
    assert not alice.closed


def test_bad_syntax(factory):
    alice = registered(factory, "alice")
    alice.send("JOIN\nNICK a b\n")
    lines = alice.lines()
    assert lines[0].startswith("ERROR bad-syntax JOIN ")
    assert lines[1].startswith("ERROR bad-syntax NICK ")


def test_invalid_utf8_dropped_connection_stays(factory):
    alice = registered(factory, "alice")
    alice.send(b"MSG #a \xff\xfe\n")
    [line] = alice.lines()
    assert line.startswith("ERROR bad-encoding ")
    assert not alice.closed
    alice.send("PING\n")
    assert alice.lines() == ["PONG"]


def test_empty_lines_ignored(factory):
    alice = registered(factory, "alice")
    alice.send("\n\r\n   \n@tag=1\n")
    assert alice.lines() == []


def test_tags_accepted_and_ignored(factory):
    alice = registered(factory, "alice")
    alice.send("@future=yes;x PING t\n")
    assert alice.lines() == ["PONG t"]


def test_line_of_exactly_the_limit_is_accepted():
    factory = make_factory(max_line=100)
    alice = registered(factory, "alice", "#a")
    line = "MSG #a " + "x" * (100 - len("MSG #a "))
    assert len(line) == 100
    alice.send(line + "\r\n")
    assert alice.lines() == ["OK MSG #a"]


def test_line_one_byte_over_the_limit_closes():
    factory = make_factory(max_line=100)
    alice = registered(factory, "alice", "#a")
    alice.send("MSG #a " + "x" * (101 - len("MSG #a ")) + "\n")
    [line] = alice.lines()
    assert line.startswith("ERROR line-too-long ")
    assert alice.closed


def test_unterminated_overlong_line_closes_before_newline_arrives():
    factory = make_factory(max_line=100)
    alice = registered(factory, "alice", "#a")
    for _ in range(10):
        alice.send("y" * 50)
    assert alice.closed
    assert alice.lines()[0].startswith("ERROR line-too-long ")
    # nothing more is processed on a closing connection
    alice.send("\nPING\n")
    assert alice.lines() == []


def test_lines_after_quit_in_same_read_are_ignored(factory):
    alice = registered(factory, "alice", "#a")
    bob = registered(factory, "bob", "#a")
    alice.lines()
    alice.send("QUIT bye\nMSG #a after\nNICK zed\n")
    assert alice.closed
    assert alice.lines() == []
    assert bob.lines() == ["QUIT alice bye"]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_split_across_reads(factory, size):
    alice = registered(factory, "alice")
    data = "JOIN #a\r\nPING one\nMSG #a hello world\n".encode()
    for i in range(0, len(data), size):
        alice.send(data[i : i + size])
    assert alice.lines() == ["JOIN #a alice", "NAMES #a alice", "ENDNAMES #a", "PONG one", "OK MSG #a"]


def test_utf8_split_across_reads(factory):
    alice = registered(factory, "alice", "#a")
    data = "MSG #a ñandú\n".encode()
    cut = data.index(b"\xc3") + 1  # inside a multi-byte character
    alice.send(data[:cut])
    alice.send(data[cut:])
    assert alice.lines() == ["OK MSG #a"]


def test_internal_error_costs_only_the_line(factory, monkeypatch):
    alice = registered(factory, "alice", "#a")

    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(factory.relay, "list_rooms", broken)
    with capturedLogs() as events:
        alice.send("ROOMS\nPING\n")
    lines = alice.lines()
    assert lines[0].startswith("ERROR server-error ")
    assert lines[1] == "PONG"
    assert any(e.get("log_level") == LogLevel.critical for e in events)


def test_drop_frees_nick_and_rooms(factory):
    alice = registered(factory, "alice", "#a")
    alice.drop()
    assert factory.relay.fanout.nicks == {}
    assert factory.relay.rooms == {}


def test_logs_joins_and_messages_only_when_asked():
    factory = make_factory()
    with capturedLogs() as events:
        alice = registered(factory, "alice", "#a")
        alice.send("MSG #a Q2lwaGVy\n")
    text = " ".join(e["log_format"].format(**e) for e in events)
    assert "alice joined #a" in text
    assert "Q2lwaGVy" not in text

    factory = make_factory(log_messages=True)
    with capturedLogs() as events:
        alice = registered(factory, "alice", "#a")
        alice.send("MSG #a Q2lwaGVy\n")
    text = " ".join(e["log_format"].format(**e) for e in events)
    assert "alice -> #a: Q2lwaGVy" in text


def test_rooms_per_connection_are_limited(factory):
    from chatsvc.relay import MAX_ROOMS_PER_MEMBER

    alice = registered(factory, "alice")
    for n in range(MAX_ROOMS_PER_MEMBER):
        factory.relay.join(alice.protocol.conn.member, f"#r{n}")
    alice.lines()
    alice.send("JOIN #one-too-many\n")
    [line] = alice.lines()
    assert line.startswith("ERROR too-many-rooms ")
    alice.send("PART #r0\nJOIN #one-too-many\n")
    assert alice.lines()[1] == "JOIN #one-too-many alice"
