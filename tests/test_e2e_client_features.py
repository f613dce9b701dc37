"""
The terminal client's irssi-style features (issue #17), end to end with
piped clients against the real relay: actions, private conversations
(/query), away notes, /ignore, /whois, /window, several rooms at start,
the config file, timestamps.
"""

from __future__ import annotations

import re
import subprocess

from tests.support import CLIENT, client_env


def test_actions_queries_and_windows(relay_process, clients):
    relay = relay_process()
    bob = clients(relay.port, "bob", "--rooms", "#lobby,#dev")
    bob.wait_for("* in #dev: bob")
    alice = clients(relay.port, "alice", "--rooms", "#lobby,#dev")
    alice.wait_for("* in #dev: bob, alice")
    alice.type("/me waves")
    bob.wait_for("[#lobby] * alice waves")  # the first room stays current
    alice.wait_for("[#lobby] * alice waves")
    alice.type("/window 2")
    alice.type("in dev")
    bob.wait_for("[#dev] alice: in dev")
    alice.type("/window")
    alice.wait_for("* rooms: 1 #lobby, 2 #dev")
    alice.type("/query bob")
    alice.wait_for_prefix("* talking privately with bob")
    alice.type("just you")
    bob.wait_for("[alice → you] just you")
    alice.wait_for("[you → bob] just you")
    alice.type("/me nods")
    bob.wait_for("[alice → you] * alice nods")
    alice.type("/whois bob")
    alice.wait_for_prefix("* bob is in #lobby, #dev with you; key ")
    alice.type("/part")
    alice.wait_for("* closed the conversation with bob")
    alice.type("back in a room")
    bob.wait_for("[#lobby] alice: back in a room")


def test_away_ignore_and_names(relay_process, clients):
    relay = relay_process()
    bob = clients(relay.port, "bob")
    bob.wait_for("* in #lobby: bob")
    alice = clients(relay.port, "alice")
    alice.wait_for("* in #lobby: bob, alice")
    alice.type("/away at lunch")
    alice.wait_for_prefix("* away: at lunch")
    bob.type("/msg alice are you there?")
    alice.wait_for("[bob → you] are you there?")
    bob.wait_for("* alice is away: at lunch")
    bob.type("/msg alice still?")
    alice.wait_for("[bob → you] still?")  # told once per person, not every time
    bob.type("/whois alice")
    bob.wait_for_prefix("* alice is in #lobby with you; away: at lunch; key ")
    assert bob.seen.count("* alice is away: at lunch") == 1
    alice.type("/ignore bob")
    alice.wait_for_prefix("* ignoring bob")
    bob.type("you will not see this")
    bob.type("/msg alice nor this")
    bob.wait_for("[you → alice] nor this")  # delivered: both are in alice's socket now...
    bob.type("/nick bob2")  # ...and alice reads this after them (one connection, in order)
    alice.wait_for("* bob is now known as bob2")
    bob.type("/nick bob")
    alice.wait_for("* bob2 is now known as bob")
    alice.type("/unignore bob")
    alice.wait_for("* no longer ignoring bob")
    bob.type("but this")
    alice.wait_for("[#lobby] bob: but this")
    assert not any("see this" in line or "nor this" in line for line in alice.seen)
    alice.type("/names")
    alice.wait_for("* in #lobby: bob, alice")


def test_the_config_file_gives_defaults_and_the_command_line_wins(relay_process, clients, tmp_path):
    relay = relay_process()
    config_home = tmp_path / "config"
    (config_home / "chatsvc").mkdir(parents=True)
    (config_home / "chatsvc" / "client.toml").write_text(
        f'host = "127.0.0.1"\nport = {relay.port}\nnick = "fromfile"\nrooms = ["#one", "#two"]\n'
        'timestamps = "[%H:%M]"\nbell = false\n'
    )
    # host, port, nick and rooms from the file; piped output stamped because the file asks
    proc = subprocess.run(CLIENT, input="hello\n", env=client_env(config_dir=str(config_home)),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^\[\d\d:\d\d\] \* you are fromfile$", proc.stdout, re.M), proc.stdout
    assert re.search(r"^\[\d\d:\d\d\] \* in #two: fromfile$", proc.stdout, re.M)
    assert re.search(r"^\[\d\d:\d\d\] \[#one\] fromfile: hello$", proc.stdout, re.M)
    # the command line wins
    proc = subprocess.run(CLIENT + ["--nick", "fromargs", "--room", "#three", "--no-timestamps"], input="",
                          env=client_env(config_dir=str(config_home)), capture_output=True, text=True, timeout=60)
    assert "* you are fromargs" in proc.stdout.splitlines() and "* in #three: fromargs" in proc.stdout.splitlines()
    assert "#one" not in proc.stdout
    # a mistake in the file is one clear line
    (config_home / "chatsvc" / "client.toml").write_text('prot = 8000\n')
    proc = subprocess.run(CLIENT, input="", env=client_env(config_dir=str(config_home)),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "unknown setting 'prot'" in proc.stderr and "Traceback" not in proc.stderr


def test_topics_are_end_to_end_encrypted_and_shown_on_join(relay_process, clients):
    relay = relay_process("--log-messages")
    bob = clients(relay.port, "bob")
    bob.wait_for("* in #lobby: bob")
    bob.type("/topic")
    bob.wait_for("* #lobby has no topic; /topic text sets one")
    alice = clients(relay.port, "alice")
    alice.wait_for("* in #lobby: bob, alice")
    alice.type("/topic release on Friday — tests first")
    line = bob.wait_for_prefix("* topic of #lobby: release on Friday — tests first (set by alice, ")
    assert line.endswith(")")
    carol = clients(relay.port, "carol")
    carol.wait_for_prefix("* topic of #lobby: release on Friday — tests first (set by alice, ")
    eve = clients(relay.port, "eve", passphrase="another passphrase, another room")
    eve.wait_for("* in #lobby: eve")
    eve.type("/topic")
    eve.wait_for("* #lobby has no topic; /topic text sets one")  # a proof of her own: not the same room
    for client in (alice, bob, carol, eve):
        client.finish()
    relay.stop()
    assert "Friday" not in relay.log()
