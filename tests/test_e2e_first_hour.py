"""
What a new user trips over in the first hour (issue #23), in the real
terminal client against the real relay: tmux shows what the user sees.
(The page's side is in tests/test_browser.py.)
"""

from __future__ import annotations

import shutil

import pytest

from tests.support import Tmux

needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is needed to drive a real terminal")


@needs_tmux
def test_1_a_wrong_passphrase_is_told_at_once_not_left_silently_alone(relay_process, clients):
    relay = relay_process()
    bob = clients(relay.port, "bob")
    bob.wait_for("* in #lobby: bob")
    carol = clients(relay.port, "carol")
    carol.wait_for("* in #lobby: bob, carol")
    term = Tmux(relay.port, "dave", "--no-timestamps", passphrase="a passphrase nobody else typed here")
    try:
        term.wait(lambda rows: "* in #lobby: dave" in rows, "dave alone in his #lobby")
        term.wait(lambda rows: "! #lobby has 2 members but none share your passphrase — check it "
                               "(they cannot read you, nor you them)" in rows, "the warning")
    finally:
        term.close()
    assert not any("passphrase" in line for line in bob.seen)  # those who share one are not told anything


@needs_tmux
def test_4_keys_first_seen_in_history_are_one_line_after_it(relay_process, clients):
    relay = relay_process()
    for nick in ("bob", "carol"):
        member = clients(relay.port, nick)
        member.wait_for_prefix("* in #lobby: ")
        member.type(f"hello from {nick}")
        member.wait_for(f"[#lobby] {nick}: hello from {nick}")
        assert member.finish()[0] == 0
    term = Tmux(relay.port, "dave", "--no-timestamps")
    try:
        wanted = "* pinned the keys of bob, carol on first use; /verify nick to compare safety numbers"
        rows = term.wait(lambda rows: wanted in rows, "one line for the keys")
        history = [n for n, row in enumerate(rows) if "hello from" in row]
        assert len(history) == 2 and rows.index(wanted) > max(history)  # after the history, not among it
        assert not any("first seen" in row for row in rows)
    finally:
        term.close()


@needs_tmux
def test_5_a_message_to_a_nick_nobody_has_is_told_at_once(relay_process):
    relay = relay_process()
    term = Tmux(relay.port, "alice", "--no-timestamps")
    try:
        term.wait(lambda rows: "* in #lobby: alice" in rows, "the join")
        term.keys("/msg dave are you there?", literal=True)
        term.keys("Enter")
        rows = term.wait(lambda rows: any(r.startswith("! nobody is called dave — not sent") for r in rows),
                         "nobody is called dave")
        assert not any("passphrase" in row or "keyed" in row for row in rows)  # no warning for what went nowhere
    finally:
        term.close()


@needs_tmux
def test_7_a_weak_passphrase_typed_in_is_asked_again_not_the_end(relay_process):
    relay = relay_process()
    term = Tmux(relay.port, "pat", "--no-timestamps", passphrase=None)  # asked for at the terminal
    try:
        question = "Passphrase (shared with the people you chat with):"
        term.wait(lambda rows: any(question in r for r in rows), "the question")
        term.keys("dragon2024", literal=True)
        term.keys("Enter")
        rows = term.wait(lambda rows: sum(question in r for r in rows) == 2, "the question, again")
        assert any("too easy to guess" in r for r in rows)
        term.keys("a much longer passphrase nobody would guess", literal=True)
        term.keys("Enter")
        term.wait(lambda rows: "* in #lobby: pat" in rows, "the join")
    finally:
        term.close()


@needs_tmux
def test_7_a_drop_and_a_return_are_one_line_each(relay_process):
    relay = relay_process()
    term = Tmux(relay.port, "ria", "--no-timestamps")
    try:
        term.wait(lambda rows: "* in #lobby: ria" in rows, "the join")
        port = relay.port
        relay.stop()
        term.wait(lambda rows: f"! connection to 127.0.0.1:{port} lost: closed by the server; reconnecting" in rows,
                  "the drop")
        relay.start(port=port)
        rows = term.wait(lambda rows: any(r.startswith(f"* reconnected to 127.0.0.1:{port} after ") for r in rows),
                         "the return")
        assert sum("127.0.0.1" in r for r in rows) == 3  # connected, lost, reconnected: no line per attempt
        assert rows.count("* you joined #lobby") == 1 and rows.count("* in #lobby: ria") == 1
    finally:
        term.close()


@needs_tmux
def test_6_each_room_is_a_window_with_its_own_scrollback(relay_process, clients):
    relay = relay_process()
    term = Tmux(relay.port, "tia", "--no-timestamps", "--rooms", "'#lobby,#dev'", columns=60)  # (quoted for the shell)
    try:
        term.wait(lambda rows: "* in #lobby: tia" in rows, "the joins")
        bob = clients(relay.port, "bob", "--rooms", "#lobby,#dev")
        bob.wait_for_prefix("* in #dev: ")
        bob.type("in the lobby")  # bob's current room: #lobby
        term.wait(lambda rows: "[#lobby] bob: in the lobby" in rows, "the lobby's line")
        bob.type("/window 2")
        bob.type("over in dev " + "and a long line that wraps under its text " * 2)
        rows = term.wait(lambda rows: any("[#dev 1]" in r for r in rows), "the unread count for #dev")
        assert not any("over in dev" in r for r in rows)  # #dev's line is in #dev's window, not in view
        term.keys("M-2")  # Alt-2: #dev in view
        rows = term.wait(lambda rows: any(r.startswith("[#dev] bob: over in dev") for r in rows), "#dev's window")
        assert not any("in the lobby" in r for r in rows)  # the lobby's lines are not in #dev's window
        at = next(n for n, r in enumerate(rows) if r.startswith("[#dev] bob: over in dev"))
        assert rows[at + 1].startswith(" " * len("[#dev] bob: ")) and len(rows[at]) <= 60  # a hanging indent
        assert not any("[#dev 1]" in r for r in rows)  # seen: no longer counted
        term.keys("M-1")
        term.wait(lambda rows: "[#lobby] bob: in the lobby" in rows, "back in the lobby")
        for n in range(40):
            bob.type(f"/msg tia private {n}")  # a query window fills up
        term.keys("/query bob", "Enter")
        term.wait(lambda rows: any(r.endswith("private 39") for r in rows), "the query's window")
        term.keys("PPage")
        rows = term.wait(lambda rows: any("more below: PageDown" in r for r in rows), "scrolled back")
        assert not any(r.endswith("private 39") for r in rows)
        term.keys("NPage")
        term.wait(lambda rows: any(r.endswith("private 39") for r in rows), "back at the bottom")
    finally:
        term.close()
