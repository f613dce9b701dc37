"""Level 1: the wire grammar as pure functions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatsvc import grammar
from chatsvc.grammar import Line, ProtocolError, parse_line


@pytest.mark.parametrize(
    "nick",
    ["a", "alice", "Bob_2", "x-y", "a.b", "José", "李雷", "Ωmega", "_x", "9lives", "a" * 32],
)
def test_valid_nicks(nick):
    assert grammar.is_valid_nick(nick)


@pytest.mark.parametrize(
    "nick",
    ["", "-a", ".a", "a b", "a" * 33, "a!", "#room", "tab\t", "nul\x00", "a:b", "emoji🙂", "a,b"],
)
def test_invalid_nicks(nick):
    assert not grammar.is_valid_nick(nick)


@pytest.mark.parametrize("room", ["#a", "#lobby", "#équipe-1", "#" + "r" * 64, "#_"])
def test_valid_rooms(room):
    assert grammar.is_valid_room(room)


@pytest.mark.parametrize("room", ["#", "lobby", "##x", "#-x", "#.x", "#" + "r" * 65, "#a b", "#a\r"])
def test_invalid_rooms(room):
    assert not grammar.is_valid_room(room)


def test_name_key_is_casefold():
    assert grammar.name_key("STRASSE") == grammar.name_key("straße")
    assert grammar.name_key("#Lobby") == "#lobby"


def test_parse_simple_commands_case_insensitively():
    assert parse_line("nick alice") == Line("NICK", ("alice",))
    assert parse_line("Rooms") == Line("ROOMS", ())
    assert parse_line("PING") == Line("PING", ())
    assert parse_line("PING tok") == Line("PING", ("tok",))


def test_trailing_argument_keeps_spaces():
    assert parse_line("MSG #a hello  there ") == Line("MSG", ("#a", "hello  there "))
    assert parse_line("PART #a see you all") == Line("PART", ("#a", "see you all"))
    assert parse_line("PART #a") == Line("PART", ("#a",))
    assert parse_line("QUIT gone fishing") == Line("QUIT", ("gone fishing",))
    assert parse_line("QUIT") == Line("QUIT", ())


def test_extra_spaces_between_arguments():
    assert parse_line("  JOIN   #a  ") == Line("JOIN", ("#a",))
    assert parse_line("MSG   #a   x y") == Line("MSG", ("#a", "x y"))


def test_tags_are_parsed_and_separate():
    line = parse_line("@id=5;x;k=v=w MSG #a hi")
    assert line.command == "MSG" and line.args == ("#a", "hi")
    assert line.tags == {"id": "5", "x": "", "k": "v=w"}


@pytest.mark.parametrize("text", ["", "   ", "@a=b", "@a=b   "])
def test_empty_lines_are_ignored(text):
    assert parse_line(text) is None


def test_unknown_command():
    with pytest.raises(ProtocolError) as e:
        parse_line("FROB x")
    assert e.value.code == "unknown-command"
    assert e.value.text.startswith("FROB ")


def test_unknown_command_echo_is_bounded_and_printable():
    with pytest.raises(ProtocolError) as e:
        parse_line("X" * 1000 + "\x1b[2J")
    assert len(e.value.text) < 100


@pytest.mark.parametrize(
    "text",
    ["NICK", "NICK a b", "JOIN", "JOIN #a b c", "MSG #a", "MSG", "NAMES", "ROOMS x", "PING a b", "PART"],
)
def test_wrong_argument_counts(text):
    with pytest.raises(ProtocolError) as e:
        parse_line(text)
    assert e.value.code == "bad-syntax"
    assert e.value.text.startswith(text.split()[0].upper() + " usage: ")


def test_format_line():
    assert grammar.format_line("MSG", "bob", "#a", "hi there") == b"MSG bob #a hi there\n"
    assert grammar.error_line("nick-taken", "bob is taken") == b"ERROR nick-taken bob is taken\n"
    assert grammar.format_line("José") == "José\n".encode()


def test_names_lines_split_within_limit():
    nicks = [f"user{i:04d}" for i in range(1000)]
    lines = grammar.names_lines("#big", nicks, max_line=200)
    assert lines[-1] == b"ENDNAMES #big\n"
    listed = []
    for raw in lines[:-1]:
        assert len(raw) - 1 <= 200
        words = raw.decode().split()
        assert words[:2] == ["NAMES", "#big"]
        listed += words[2:]
    assert listed == nicks


def test_names_lines_single():
    assert grammar.names_lines("#a", ["x", "y"], 65536) == [b"NAMES #a x y\n", b"ENDNAMES #a\n"]


# --- properties ------------------------------------------------------------

name_chars = st.characters(categories=("L", "Nd"), exclude_characters="\x00") | st.sampled_from("_-.")


@given(st.text(name_chars, min_size=1, max_size=32))
def test_nick_rule_matches_definition(text):
    expected = text[0] not in "-." and all(ch.isalnum() or ch in "_-." for ch in text)
    assert grammar.is_valid_nick(text) == expected


@given(st.text(max_size=300))
def test_parse_never_raises_anything_but_protocol_errors(text):
    try:
        parse_line(text)
    except ProtocolError as e:
        assert e.code in ("unknown-command", "bad-syntax")


payloads = st.text(st.characters(exclude_characters="\n\r", exclude_categories=("Cs",)), min_size=1).filter(
    lambda s: s.strip(" ") == s and s
)


@given(payloads)
def test_msg_payload_round_trips(payload):
    line = parse_line(grammar.format_line("MSG", "#room", payload).decode()[:-1])
    assert line == Line("MSG", ("#room", payload))


@given(st.lists(st.text(name_chars, min_size=1, max_size=32), max_size=300), st.integers(60, 400))
def test_names_lines_lose_nobody(nicks, limit):
    lines = grammar.names_lines("#r", nicks, limit)
    listed = [w for raw in lines[:-1] for w in raw.decode().split()[2:]]
    assert listed == nicks
    for raw in lines[:-1]:
        assert len(raw) - 1 <= limit or raw.decode().count(" ") == 2
