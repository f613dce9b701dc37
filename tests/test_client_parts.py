"""Level 1: the parts of a client session, each alone (no protocol, no reactor)."""

from __future__ import annotations

import pytest

from chatsvc.client.commands import Commands
from chatsvc.client.delivery import JOIN_HISTORY, Delivery
from chatsvc.client.lifecycle import BadTransition, Lifecycle, State


# --- lifecycle --------------------------------------------------------------------------


def test_a_session_goes_through_its_states():
    life = Lifecycle()
    for state in (State.REGISTERING, State.JOINING, State.READY, State.OFFLINE, State.REGISTERING,
                  State.JOINING, State.READY, State.CLOSING, State.CLOSED):
        life.to(state)
        assert life.state is state
    assert life.quitting and not life.online


@pytest.mark.parametrize("path", [
    [State.READY],  # ready before connecting
    [State.REGISTERING, State.READY],  # ready without joining
    [State.CLOSED, State.REGISTERING],  # back from the dead
    [State.REGISTERING, State.CLOSING, State.READY],
])
def test_impossible_transitions_raise(path):
    life = Lifecycle()
    with pytest.raises(BadTransition):
        for state in path:
            life.to(state)


# --- delivery ----------------------------------------------------------------------------


def test_unacknowledged_messages_are_resent_for_rooms_we_are_back_in():
    d = Delivery(cid_base="base")
    first = d.track("#a", "one")
    d.track("#gone", "lost")
    third = d.track("#A", "three")
    d.acknowledged("#a", 5, first)
    assert d.to_resend({"#a": "#a"}) == [(third, "#a", "three")]
    assert list(d.unacked) == [third]  # the one for a room we left is dropped


def test_history_asks_for_what_was_missed_once_ids_are_known():
    d = Delivery()
    assert d.history_request("#a") == ("last", JOIN_HISTORY)
    assert d.history_mode("#a") == "earlier" and d.in_history_reply("#a")
    d.history_ended("#a")
    assert not d.in_history_reply("#a")
    assert d.first_time("#a", "7") and not d.first_time("#a", "7") and not d.first_time("#a", "6")
    assert d.history_request("#a") == ("after", 7) and d.history_mode("#a") == "missed"
    d.connection_lost()
    assert not d.in_history_reply("#a")


def test_an_id_is_a_plain_decimal_or_nothing():
    d = Delivery()
    assert d.first_time("#a", "\u00b2") and d.last_id == {}


# --- commands --------------------------------------------------------------------------------


class StandIn:
    """Just enough of a session for the commands."""

    def __init__(self):
        self.calls, self.problems = [], []
        self.current, self.rooms = "#lobby", {"#lobby": "#lobby"}
        self.wanted_nick = "alice"

        class Protocol:
            def __getattr__(inner, name):
                return lambda *args: self.calls.append((name, *args))

        self.protocol = Protocol()

    def problem(self, text):
        self.problems.append(text)

    def join_room(self, room):
        self.calls.append(("join_room", room))

    def send_encrypted(self, target, text):
        self.calls.append(("send", target, text))
        return True

    send_private = send_encrypted

    def leave(self, reason):
        self.calls.append(("leave", reason))

    class display:
        @staticmethod
        def show(text):
            pass


@pytest.mark.parametrize("typed, call", [
    ("/join dev", ("join_room", "#dev")),
    ("/msg bob hi there", ("send", "bob", "hi there")),
    ("/part", ("part", "#lobby")),
    ("/names #x", ("request_names", "#x")),
    ("/nick bob", ("register", "bob")),
    ("/QUIT bye now", ("leave", "bye now")),
])
def test_commands_turn_words_into_calls(typed, call):
    s = StandIn()
    Commands(s).run(typed)
    assert s.calls == [call] and s.problems == []


@pytest.mark.parametrize("typed", ["/join", "/join #a b", "/msg bob", "/msg #room hi", "/nick bad nick", "/frob"])
def test_commands_refuse_what_cannot_work(typed):
    s = StandIn()
    Commands(s).run(typed)
    assert s.calls == [] and len(s.problems) == 1


def test_send_takes_quoted_paths_with_spaces(tmp_path):
    class Transfers:
        def __init__(self):
            self.sent = []

        def send(self, target, path):
            self.sent.append((target, path))

    s = StandIn()
    s.transfers = Transfers()
    spaced = tmp_path / "with spaces.txt"
    spaced.write_text("hi")
    Commands(s).run(f'/send "{spaced}"')
    Commands(s).run(f"/send bob '{spaced}'")
    Commands(s).run(f"/send {spaced}")  # unquoted, but the file exists as typed
    assert s.transfers.sent == [("#lobby", str(spaced)), ("bob", str(spaced)), ("#lobby", str(spaced))]


def test_a_missing_file_says_so(tmp_path):
    from chatsvc.client.files import Outgoing, TransferError

    with pytest.raises(TransferError, match="no such file"):
        Outgoing.open(str(tmp_path / "nope.txt"), "#a")
    with pytest.raises(TransferError, match="not a file"):
        Outgoing.open(str(tmp_path), "#a")
