"""
Level 1: the relay state alone -- members are plain callables collecting
lines; no protocol, no transport, no reactor.
"""

from __future__ import annotations

import pytest

from chatsvc.fanout import LocalFanout
from chatsvc.grammar import ProtocolError
from chatsvc.history import History
from chatsvc.relay import Member, Relay


def member(relay: Relay, nick: str, *rooms: str) -> tuple[Member, list[bytes]]:
    got: list[bytes] = []
    m = Member(got.append, peer=f"{nick}-peer")
    relay.set_nick(m, nick)
    for room in rooms:
        relay.join(m, room)
    got.clear()
    return m, got


def text(lines: list[bytes]) -> list[str]:
    out = [line.decode().rstrip("\n") for line in lines]
    lines.clear()
    return out


def test_a_room_message_is_encoded_once_for_everyone():
    relay = Relay(now=lambda: 0.0)
    alice, _ = member(relay, "alice", "#a")
    (_, bob_got), (_, carol_got) = member(relay, "bob", "#a"), member(relay, "carol", "#a")
    bob_got.clear()
    relay.message(alice, "#a", "payload")
    assert bob_got == carol_got == [b"@id=1 MSG alice #a payload\n"]
    assert bob_got[0] is carol_got[0]  # the same bytes object


def test_errors_are_protocol_errors_with_codes():
    relay = Relay()
    alice, _ = member(relay, "alice")
    for call, code in [
        (lambda: relay.message(alice, "#nowhere", "x"), "not-in-room"),
        (lambda: relay.message(alice, "nobody", "x"), "no-such-nick"),
        (lambda: relay.join(alice, "lobby"), "room-invalid"),
        (lambda: relay.set_nick(alice, "-bad"), "nick-invalid"),
    ]:
        with pytest.raises(ProtocolError) as e:
            call()
        assert e.value.code == code


def test_everything_shared_goes_through_the_fanout_seam():
    calls = []

    class Recording(LocalFanout):
        def __getattribute__(self, name):
            if name in ("claim_nick", "release_nick", "find_nick", "to_room", "duplicate", "new_record", "room_history"):
                calls.append(name)
            return super().__getattribute__(name)

    relay = Relay(fanout=Recording(History(10, 0)), now=lambda: 0.0)
    alice, _ = member(relay, "alice", "#a")
    bob, _ = member(relay, "bob", "#a")
    relay.message(alice, "#a", "hi", cid="c1")
    relay.message(alice, "bob", "psst")
    relay.send_history(bob, "#a", "last", "5")
    relay.quit(alice, "bye")
    assert {"claim_nick", "to_room", "duplicate", "new_record", "find_nick", "room_history",
            "release_nick"} <= set(calls)


def test_quit_tells_each_room_mate_once():
    relay = Relay()
    alice, _ = member(relay, "alice", "#a", "#b")
    _, bob_got = member(relay, "bob", "#a", "#b")
    relay.quit(alice, "gone")
    assert text(bob_got) == ["QUIT alice gone"]
    assert relay.fanout.find_nick("alice") is None
