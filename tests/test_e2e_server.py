"""
Level 4: the real ``twistd -n chat`` in a subprocess, real TCP clients.

The protocol tests run twice: against one relay, and with their clients
dealt over two relays linked through a real redis-server -- the same
answers, whichever relay each client landed on.
"""

from __future__ import annotations

import itertools
import socket
import subprocess
import sys
import threading

import pytest

from tests.support import TWISTD, LineSocket, RelayProcess, subprocess_env, without_ids


class LinkedRelays:
    """Two linked relays that look like one: each new client goes to the next."""

    def __init__(self, relays: list[RelayProcess]) -> None:
        self.relays = relays
        self._next = itertools.cycle(relays)

    def connect(self) -> LineSocket:
        return next(self._next).connect()

    pair = RelayProcess.pair


@pytest.fixture(params=["one relay", "two linked relays"])
def any_relay(request, relay_process):
    """Start the relay under test: one process, or two linked through Redis."""
    if request.param == "one relay":
        return relay_process
    url = request.getfixturevalue("redis_db")

    def start(*extra: str) -> LinkedRelays:
        return LinkedRelays([relay_process("--redis", url, *extra) for _ in range(2)])

    return start


def test_relay_and_notices(any_relay):
    relay = any_relay()
    alice, bob, carol = relay.connect(), relay.connect(), relay.connect()
    assert alice.readline().startswith("HELLO chatsvc 1 ")
    alice.send("NICK alice\r\nJOIN #lobby\r\n")
    alice.expect("OK NICK alice", "JOIN #lobby alice", "NAMES #lobby alice", "ENDNAMES #lobby")
    bob.register("bob", "#lobby")
    alice.expect("JOIN #lobby bob")
    carol.register("carol")
    bob.send("MSG #lobby YmFzZTY0 payload\n")
    bob.expect("OK MSG #lobby")
    alice.expect("MSG bob #lobby YmFzZTY0 payload")
    carol.send("MSG alice psst\n")
    carol.expect("OK MSG alice")
    alice.expect("MSG carol alice psst")
    bob.send("PART #lobby later\n")
    bob.expect("PART #lobby bob later")
    alice.expect("PART #lobby bob later")
    for client in (alice, bob, carol):
        client.close()


def test_abrupt_disconnect_gives_quit_connection_lost(any_relay):
    relay = any_relay()
    alice, bob = relay.pair()
    bob.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    bob.close()  # RST, no QUIT
    alice.expect("QUIT bob connection lost")
    # the nick is free again
    again = relay.connect()
    again.register("bob")


def test_quit_closes_connection(any_relay):
    relay = any_relay()
    alice, bob = relay.pair()
    bob.send("QUIT bye now\n")
    assert bob.at_eof()
    alice.expect("QUIT bob bye now")


def test_line_split_across_many_reads(any_relay):
    relay = any_relay()
    alice, bob = relay.pair()
    bob.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for byte in "MSG #a ¡Hola! ¿Sí? ñandú\n".encode():
        bob.send(bytes([byte]))
    bob.expect("OK MSG #a")
    alice.expect("MSG bob #a ¡Hola! ¿Sí? ñandú")


NO_FLOOD_LIMIT = ("--flood-burst", "0", "--flood-rate", "0")


def test_many_lines_in_one_read(any_relay):
    relay = any_relay(*NO_FLOOD_LIMIT)
    alice, bob = relay.pair()
    bob.send("".join(f"MSG #a line {n}\n" for n in range(500)))
    for n in range(500):
        alice.expect(f"MSG bob #a line {n}")


def test_many_clients_sending_at_once(any_relay):
    relay = any_relay(*NO_FLOOD_LIMIT)
    listener = relay.connect()
    listener.register("listener", "#busy")
    senders = []
    for i in range(8):
        s = relay.connect()
        s.register(f"s{i}", "#busy")
        senders.append(s)
    # Drain the join notices the listener got.
    listener.read_until("JOIN #busy s7")
    body = "x" * 300
    barrier = threading.Barrier(len(senders))

    def blast(i: int, s: LineSocket) -> None:
        barrier.wait()
        for n in range(100):
            s.send(f"MSG #busy {i}:{n}:{body}\n")

    threads = [threading.Thread(target=blast, args=(i, s)) for i, s in enumerate(senders)]
    for t in threads:
        t.start()
    got: dict[str, list[int]] = {}
    for _ in range(800):
        line = without_ids(listener.readline())
        _, sender, room, payload = line.split(" ", 3)
        i, n, rest = payload.split(":")
        assert sender == f"s{i}" and room == "#busy" and rest == body
        got.setdefault(sender, []).append(int(n))
    for t in threads:
        t.join()
    assert got == {f"s{i}": list(range(100)) for i in range(8)}


def test_bad_input_gets_documented_errors(any_relay):
    relay = any_relay("--max-line", "1000")
    alice, bob = relay.pair()
    bob.send(b"\xc3\x28\nFROB\nMSG #a\n")
    assert bob.readline().startswith("ERROR bad-encoding ")
    assert bob.readline().startswith("ERROR unknown-command FROB ")
    assert bob.readline().startswith("ERROR bad-syntax MSG ")
    bob.send("MSG #a " + "z" * 2000 + "\n")
    assert bob.readline().startswith("ERROR line-too-long ")
    assert bob.at_eof()
    alice.expect("QUIT bob line too long")
    alice.send("PING still-here\n")
    alice.expect("PONG still-here")


def test_logs_where_it_listens_and_no_payloads_by_default(relay_process):
    relay = relay_process()
    a, b = relay.pair()
    b.send("MSG #a U0VDUkVUX1BBWUxPQUQ\n")
    b.expect("OK MSG #a")
    b.send("QUIT\n")
    b.at_eof()
    a.expect("MSG bob #a U0VDUkVUX1BBWUxPQUQ", "QUIT bob")
    relay.stop()
    log = relay.log()
    assert f"listening on tcp:0:interface=127.0.0.1:backlog=1024 (127.0.0.1 port {relay.port})" in log
    assert "alice joined #a" in log
    assert "U0VDUkVUX1BBWUxPQUQ" not in log


def test_log_messages_shows_ciphertext_as_received(relay_process):
    relay = relay_process("--log-messages")
    a, b = relay.pair()
    b.send("MSG #a U0VDUkVUX1BBWUxPQUQ\n")
    b.expect("OK MSG #a")
    relay.stop()
    assert "bob -> #a: U0VDUkVUX1BBWUxPQUQ" in relay.log()


def test_wildcard_bind_logs_this_hosts_addresses(tmp_path):
    with socket.socket() as probe:
        probe.bind(("", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        TWISTD + ["-n", "--pidfile=", "chat", "--port", str(port)],
        cwd=tmp_path, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if "clients can connect to" in line or len(seen) > 30:
                break
        text = "".join(seen)
        assert f"listening on tcp:{port}:backlog=1024 (0.0.0.0 port {port})" in text
        assert "clients can connect to" in text
    finally:
        proc.terminate()
        proc.wait(10)


def test_port_in_use_exits_nonzero_with_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            TWISTD + ["-n", "--pidfile=", "chat", "--port", f"tcp:{port}:interface=127.0.0.1"],
            cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=30,
        )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"cannot listen on tcp:{port}:interface=127.0.0.1:backlog=1024: address already in use" in output
    assert "Traceback" not in output


def test_bad_port_description_is_a_usage_error(tmp_path):
    result = subprocess.run(
        TWISTD + ["-n", "--pidfile=", "chat", "--port", "bogus:1"],
        cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=30,
    )
    assert result.returncode != 0
    assert "bad --port 'bogus:1'" in result.stdout + result.stderr


# The socket-activation handshake of systemd, done by hand: a listening
# socket on fd 3, LISTEN_PID/LISTEN_FDS naming it, then exec of twistd (the
# pid stays the same across exec, as with systemd).
_ACTIVATE = """
import os, socket, sys
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen()
print(sock.getsockname()[1], flush=True)
if sock.fileno() != 3:
    os.dup2(sock.fileno(), 3)
os.set_inheritable(3, True)
os.environ["LISTEN_PID"] = str(os.getpid())
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_FDNAMES"] = "chatsvc"
os.execv(sys.executable, [sys.executable] + sys.argv[1:])
"""


def test_systemd_socket_activation(tmp_path):
    cmd = [sys.executable, "-c", _ACTIVATE] + TWISTD[1:] + ["-n", "--pidfile=", "chat", "--port", "systemd:domain=INET:index=0"]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        port = int(proc.stdout.readline())
        client = LineSocket(socket.create_connection(("127.0.0.1", port), timeout=10))
        client.register("sd", "#a")
        client.send("PING ok\n")
        client.expect("PONG ok")
    finally:
        proc.terminate()
        proc.wait(10)


def test_unusable_store_is_a_one_line_failure(tmp_path):
    result = subprocess.run(
        TWISTD + ["-n", "--pidfile=", "chat", "--port", "tcp:0:interface=127.0.0.1",
                  "--store", str(tmp_path / "no-such-dir" / "history.sqlite")],
        cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=30,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert "chatsvc: cannot open store" in output and "Traceback" not in output
