"""Level 4: TLS between the real client and the real relay."""

from __future__ import annotations

import subprocess

import pytest

from tests.certs import make_ca, make_server_cert
from tests.support import CLIENT, client_env


@pytest.fixture
def tls_relay(relay_process, tmp_path):
    ca = make_ca(tmp_path)
    key, cert = make_server_cert(tmp_path, ca)
    relay = relay_process(listen=f"ssl:{{port}}:privateKey={key}:certKey={cert}:interface=127.0.0.1")
    return relay, ca[2]


def test_tls_chat_with_the_ca_file(tls_relay, clients):
    relay, ca_file = tls_relay
    alice = clients(relay.port, "alice", "--ca-file", str(ca_file))
    alice.wait_for("* in #lobby: alice")
    bob = clients(relay.port, "bob", "--ca-file", str(ca_file))
    bob.wait_for("* in #lobby: alice, bob")
    bob.type("over TLS")
    alice.wait_for("[#lobby] bob: over TLS")


def run_client(port: int, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        CLIENT + ["127.0.0.1", "--port", str(port), "--nick", "x", *args],
        env=client_env(), capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )


def test_unknown_certificate_is_refused(tls_relay, tmp_path):
    relay, _ = tls_relay
    other_ca = make_ca(tmp_path, "other-ca")
    result = run_client(relay.port, "--ca-file", str(other_ca[2]))
    assert result.returncode == 1
    assert f"! cannot talk to 127.0.0.1:{relay.port}: TLS: the server's certificate is not trusted" in result.stdout


def test_system_cas_do_not_trust_a_private_ca(tls_relay):
    relay, _ = tls_relay
    result = run_client(relay.port, "--tls")
    assert result.returncode == 1
    assert "certificate is not trusted" in result.stdout


def test_certificate_for_another_host_is_refused(relay_process, tmp_path):
    ca = make_ca(tmp_path)
    key, cert = make_server_cert(tmp_path, ca, names=("elsewhere.example",), ips=())
    relay = relay_process(listen=f"ssl:{{port}}:privateKey={key}:certKey={cert}:interface=127.0.0.1")
    result = run_client(relay.port, "--ca-file", str(ca[2]))
    assert result.returncode == 1
    assert "not valid for this host name" in result.stdout


def test_tls_client_against_a_plain_server(relay_process, tmp_path):
    relay = relay_process()
    ca = make_ca(tmp_path)
    result = run_client(relay.port, "--ca-file", str(ca[2]))
    assert result.returncode == 1
    assert "does not seem to speak TLS" in result.stdout


def test_unreadable_ca_file(tmp_path):
    result = run_client(1, "--ca-file", str(tmp_path / "nope.pem"))
    assert result.returncode == 1
    assert "cannot read CA file" in result.stderr


def test_silent_sockets_at_a_tls_port_are_closed_and_free_their_places(relay_process, tmp_path):
    # Before: a connection that never finished the TLS handshake was never
    # closed (a polite close waits for the handshake), so 100 such sockets
    # locked everyone at that address out.
    import socket
    import time

    ca = make_ca(tmp_path)
    key, cert = make_server_cert(tmp_path, ca)
    relay = relay_process(
        "--register-timeout", "1", "--close-grace", "1", "--max-per-ip", "3",
        listen=f"ssl:{{port}}:privateKey={key}:certKey={cert}:interface=127.0.0.1",
    )
    silent = [socket.create_connection(("127.0.0.1", relay.port), timeout=30) for _ in range(3)]
    for sock in silent:
        # The relay hangs up (registration timeout, then an abort after its
        # grace): recv returns EOF or the connection is reset.
        try:
            assert sock.recv(1) == b""
        except ConnectionResetError:
            pass
        sock.close()
    # The places are free again: a real client gets in.
    result = run_client(relay.port, "--ca-file", str(ca[2]), "--no-reconnect")
    assert "at most 3 connections per address" not in result.stdout + result.stderr
    assert "connected to 127.0.0.1" in result.stdout, result.stdout + result.stderr
