"""Level 4: client processes against the real twistd relay."""

from __future__ import annotations

import re

import shutil
import subprocess

import pytest

from tests.support import CLIENT, PASSPHRASE, Tmux, client_env, subprocess_env

def test_caesar_clients_chat_and_server_sees_only_ciphertext(relay_process, clients):
    relay = relay_process("--log-messages")
    bob = clients(relay.port, "bob", "--cipher", "caesar")
    bob.wait_for("* in #lobby: bob")
    alice = clients(relay.port, "alice", "--cipher", "caesar")
    alice.wait_for("* in #lobby: bob, alice")
    bob.wait_for("* alice joined #lobby")

    alice.type("¡Hola! ¿Sí? ñandú")
    bob.wait_for("[#lobby] alice: ¡Hola! ¿Sí? ñandú")
    bob.type("/msg alice secret plan")
    alice.wait_for("[bob → you] secret plan")

    status, err = alice.finish()
    assert status == 0, err
    bob.wait_for("* alice quit")
    status, err = bob.finish()
    assert status == 0, err

    relay.stop()
    log = relay.log()
    assert "alice -> #lobby: caesar:¡Ryvk! ¿Cí? ñkxnú" in log
    assert "secret plan" not in log and "Hola" not in log


def test_eof_sends_everything_typed_before_quitting(relay_process, clients):
    relay = relay_process()
    bob = clients(relay.port, "bob")
    bob.wait_for("* in #lobby: bob")
    alice = clients(relay.port, "alice")
    for n in range(50):
        alice.type(f"line {n}")
    status, _ = alice.finish()  # EOF right away, before even joining
    assert status == 0
    for n in range(50):
        bob.wait_for(f"[#lobby] alice: line {n}")
    bob.wait_for("* alice quit")


def test_fin_quits_with_status_zero(relay_process, clients):
    relay = relay_process()
    alice = clients(relay.port, "alice")
    alice.wait_for("* in #lobby: alice")
    alice.type("fin")
    assert alice.proc.wait(20) == 0


def test_taken_nick_is_a_clear_failure(relay_process, clients):
    relay = relay_process()
    first = clients(relay.port, "alice")
    first.wait_for("* in #lobby: alice")
    second = clients(relay.port, "ALICE")
    status, _ = second.finish()
    assert status == 1
    assert "! ALICE is already in use" in second.seen


def test_cannot_connect_is_one_line_and_status_1(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    result = subprocess.run(
        CLIENT + ["127.0.0.1", "--port", str(port), "--nick", "x"],
        env=client_env(), capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == f"cannot connect to 127.0.0.1:{port}: connection refused"


def test_server_going_away_without_reconnect_is_status_1(relay_process, clients):
    relay = relay_process()
    alice = clients(relay.port, "alice", "--no-reconnect")
    alice.wait_for("* in #lobby: alice")
    relay.stop()
    assert alice.proc.wait(20) == 1
    assert f"! connection to 127.0.0.1:{relay.port} lost: closed by the server" in alice.rest()


def test_prompts_for_missing_host_and_nick(relay_process):
    relay = relay_process()
    proc = subprocess.run(
        CLIENT + ["--port", str(relay.port)],
        input="127.0.0.1\ncarol\nhi\n".encode(), env=client_env(), capture_output=True, timeout=30,
    )
    out = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr
    assert out.startswith("Server address: Nickname: ")
    assert "* you are carol" in out
    assert "[#lobby] carol: hi" in out


def test_invalid_nick_rejected_before_connecting():
    proc = subprocess.run(
        CLIENT + ["127.0.0.1", "--nick=-bad"], env=client_env(), capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode == 1
    assert "not a valid nickname" in proc.stderr


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is needed to drive a real terminal")
def test_interactive_mode_keeps_the_half_typed_line(relay_process, clients):
    relay = relay_process()
    term = Tmux(relay.port, "tia")
    try:
        term.wait(lambda rows: "* in #lobby: tia" in " ".join(rows), "the join")
        term.keys("half typed ñandú", literal=True)
        term.wait(lambda rows: rows[-1].endswith("[#lobby] half typed ñandú"), "the typed line")
        other = clients(relay.port, "bob")
        other.wait_for("* in #lobby: tia, bob")
        other.type("interrupting!")
        rows = term.wait(lambda rows: any(r.endswith("[#lobby] bob: interrupting!") for r in rows), "bob's line")
        assert rows[-1] == "[#lobby] half typed ñandú"
        term.keys("Enter")
        other.wait_for("[#lobby] tia: half typed ñandú")
    finally:
        term.close()


def test_aes_by_default_server_log_holds_no_plaintext(relay_process, clients, tmp_path):
    relay = relay_process("--log-messages")
    key_file = tmp_path / "passphrase"
    key_file.write_text(PASSPHRASE + "\n")
    bob = clients(relay.port, "bob", "--passphrase-file", str(key_file), passphrase="")
    bob.wait_for("* in #lobby: bob")
    alice = clients(relay.port, "alice")
    alice.wait_for("* in #lobby: bob, alice")
    # Another passphrase makes another join proof: eve is in a #lobby of
    # her own and gets neither the members, nor the messages, nor history.
    eve = clients(relay.port, "eve", passphrase="a different passphrase entirely")
    eve.wait_for("* in #lobby: eve")

    alice.type("¡Hola! ¿Sí? ñandú — the plan is on")
    bob.wait_for("[#lobby] alice: ¡Hola! ¿Sí? ñandú — the plan is on")
    bob.type("/msg alice just between us")
    alice.wait_for("[bob → you] just between us")

    for client in (alice, bob, eve):
        assert client.finish()[0] == 0
    assert not any("plan" in line or "alice" in line for line in eve.seen)
    assert not any("warning" in line for line in alice.seen)
    relay.stop()
    log = relay.log()
    assert "alice -> #lobby: aes3:" in log
    assert "bob -> alice: aes3:" in log
    for secret in ("Hola", "plan", "between us", PASSPHRASE):
        assert secret not in log


def test_missing_passphrase_is_explained(relay_process):
    relay = relay_process()
    env = subprocess_env()
    env.pop("CHATSVC_PASSPHRASE", None)
    result = subprocess.run(
        CLIENT + ["127.0.0.1", "--port", str(relay.port), "--nick", "x"],
        env=env, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
        start_new_session=True,  # no controlling terminal to ask on
    )
    assert result.returncode == 1
    assert "no passphrase: give --passphrase-file PATH or set CHATSVC_PASSPHRASE" in result.stderr


def test_unreadable_passphrase_file(tmp_path):
    result = subprocess.run(
        CLIENT + ["127.0.0.1", "--nick", "x", "--passphrase-file", str(tmp_path / "missing")],
        env=subprocess_env(), capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 1
    assert "cannot read passphrase file" in result.stderr and "No such file" in result.stderr


def test_caesar_warns_once(relay_process, clients):
    relay = relay_process()
    alice = clients(relay.port, "alice", "--cipher", "caesar")
    lines = alice.wait_for("* in #lobby: alice")
    assert sum("not secure" in line for line in lines) == 1


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is needed to drive a real terminal")
def test_passphrase_is_asked_without_echo(relay_process):
    relay = relay_process()
    term = Tmux(relay.port, "pat", passphrase=None)  # none in the environment: it is asked for
    try:
        term.wait(lambda rows: any("Passphrase (shared with the people you chat with):" in r for r in rows), "the question")
        term.keys("hunter2-secret-words", literal=True)
        term.keys("Enter")
        rows = term.wait(lambda rows: any(r.endswith("* in #lobby: pat") for r in rows), "the join")
        assert not any("hunter2" in row for row in rows)
    finally:
        term.close()


def test_clients_reconnect_after_a_server_restart(relay_process, clients):
    relay = relay_process("--log-messages")
    alice = clients(relay.port, "alice")
    alice.wait_for("* in #lobby: alice")
    alice.type("/join #dev")
    alice.wait_for("* in #dev: alice")
    bob = clients(relay.port, "bob", "--room", "#dev")
    bob.wait_for("* in #dev: alice, bob")
    port = relay.port
    relay.stop()
    for client in (alice, bob):
        client.wait_for("! the server is shutting down")
        client.wait_for(f"! connection to 127.0.0.1:{port} lost: closed by the server; reconnecting")
    alice.type("typed while the server was down")  # queued, sent after reconnecting
    alice.wait_for("* not connected: what you type is sent once the connection is back")
    relay.start(port=port)
    for client in (alice, bob):
        client.wait_for_prefix(f"* reconnected to 127.0.0.1:{port} after ")
    alice.wait_for("[#dev] alice: typed while the server was down")
    # Both rejoined both their rooms, quietly; #dev is still alice's current room.
    bob.type("welcome back")
    alice.wait_for("[#dev] bob: welcome back")
    alice.type("thanks")
    bob.wait_for("[#dev] alice: thanks")
    assert alice.finish()[0] == 0
    relay.stop()
    log = relay.log()
    restart = log.rindex("listening on")
    assert "alice -> #dev: aes3:" in log[restart:]  # the queued line was sent


def test_reconnect_takes_a_variant_nick_while_the_old_one_lingers(relay_process, clients):
    relay = relay_process()
    alice = clients(relay.port, "alice")
    alice.wait_for("* in #lobby: alice")
    port = relay.port
    relay.stop()
    alice.wait_for(f"! connection to 127.0.0.1:{port} lost: closed by the server; reconnecting")
    relay.start(port=port)
    squatter = relay.connect()
    squatter.register("alice")  # someone takes the nick during the outage
    alice.wait_for("* you are alice_ (alice was taken meanwhile)")
    alice.type("/names")  # back in #lobby (quietly), under the variant
    alice.wait_for("* in #lobby: alice_")


def test_guessable_passphrase_is_refused_or_warned_about():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def run(passphrase, *extra):
        return subprocess.run(
            CLIENT + ["127.0.0.1", "--port", str(port), "--nick", "x", *extra],
            env=client_env(passphrase), capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
        )

    refused = run("dragon2024")
    assert refused.returncode == 1
    assert "this passphrase is too easy to guess" in refused.stderr and "--new-passphrase" in refused.stderr
    allowed = run("dragon2024", "--allow-weak-passphrase")
    assert "warning: this passphrase is estimated at" in allowed.stderr
    assert "cannot connect" in allowed.stderr  # it went on (to a closed port)


def test_new_passphrase_is_generated_and_strong():
    from chatsvc.client import passphrases

    out = subprocess.run(
        CLIENT + ["--new-passphrase"], env=subprocess_env(), capture_output=True, text=True, timeout=30
    )
    words = out.stdout.strip().split("-")
    assert out.returncode == 0 and len(words) == passphrases.GENERATED_WORDS
    assert passphrases.generated_bits() >= 100
    assert passphrases.strength_bits(out.stdout.strip()) >= passphrases.WARN_BELOW_BITS


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is needed to drive a real terminal")
def test_wide_characters_edit_by_display_width(relay_process, clients):
    # Issue #17, bug 1: type ab😀cd, Left, Left, Backspace, X.
    relay = relay_process()
    term = Tmux(relay.port, "tia", "--no-timestamps")
    try:
        term.wait(lambda rows: "* in #lobby: tia" in rows, "the join")
        bob = clients(relay.port, "bob")
        bob.wait_for("* in #lobby: tia, bob")
        term.keys("ab😀cd", literal=True)
        term.wait(lambda rows: rows[-1] == "[#lobby] ab😀cd", "the typed line")
        term.keys("Left", "Left", "BSpace")
        term.wait(lambda rows: rows[-1] == "[#lobby] abcd", "the line without the emoji")
        term.keys("X", literal=True)
        term.wait(lambda rows: rows[-1] == "[#lobby] abXcd", "X where the cursor is")
        term.keys("Enter")
        bob.wait_for("[#lobby] tia: abXcd")
    finally:
        term.close()


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is needed to drive a real terminal")
def test_input_wider_than_the_terminal_leaves_no_stale_rows(relay_process, clients):
    # Issue #17, bug 2: the input scrolls sideways in one row, so neither a
    # message arriving mid-typing nor Enter leaves pieces of it behind.
    relay = relay_process()
    term = Tmux(relay.port, "tia", "--no-timestamps", columns=60)
    try:
        term.wait(lambda rows: "* in #lobby: tia" in rows, "the join")
        bob = clients(relay.port, "bob")
        bob.wait_for("* in #lobby: tia, bob")
        typed = "".join(f"{n:03d}-" for n in range(40))  # 160 characters
        term.keys(typed, literal=True)
        term.wait(lambda rows: rows[-1].endswith("039-"), "the end of the long input")
        bob.type("interrupting!")
        rows = term.wait(lambda rows: "[#lobby] bob: interrupting!" in rows, "bob's line")
        assert rows[-1].endswith("039-") and rows[-2] == "[#lobby] bob: interrupting!"
        # no piece of the input above (its pieces look like 012-013-)
        assert not any(re.search(r"\d{3}-\d{3}-", row) for row in rows[:-1]), "\n".join(rows)
        term.keys("Enter")
        bob.wait_for(f"[#lobby] tia: {typed}")
        rows = term.wait(lambda rows: rows[-1] == "[#lobby]", "an empty input row")
        assert sum(typed[:20] in row for row in rows) == 1  # the line as sent, once, and nothing else
    finally:
        term.close()


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is needed to drive a real terminal")
def test_tab_completes_a_nick_and_a_line_that_names_you_stands_out(relay_process, clients):
    relay = relay_process()
    term = Tmux(relay.port, "tia", "--no-timestamps")
    try:
        term.wait(lambda rows: "* in #lobby: tia" in rows, "the join")
        bob = clients(relay.port, "bobby")
        bob.wait_for("* in #lobby: tia, bobby")
        term.wait(lambda rows: "* bobby joined #lobby" in rows, "bobby's join")
        term.keys("bo", literal=True)
        term.keys("Tab")
        term.wait(lambda rows: rows[-1] == "[#lobby] bobby:", "the completed nick")
        term.keys("hi", literal=True)
        term.keys("Enter")
        bob.wait_for("[#lobby] tia: bobby: hi")
        bob.type("tia: welcome")
        term.wait(lambda rows: "[#lobby] bobby: tia: welcome" in rows, "the mention")
        styled = term.screen(styled=True)
        assert "\x1b[1m[#lobby] bobby: tia: welcome" in styled  # bold: it names you
    finally:
        term.close()
