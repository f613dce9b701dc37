"""The systemd units parse and reference the right twistd invocation."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO

UNITS = ["chatsvc.service", "chatsvc.socket", "chatsvc-activated.service", "chatsvc@.service"]


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(REPO / "etc" / name)
    return parser


@pytest.mark.parametrize("name", ["chatsvc.service", "chatsvc-activated.service", "chatsvc@.service"])
def test_service_runs_twistd_in_foreground_without_pidfile(name):
    service = _unit(name)["Service"]
    cmd = service["ExecStart"].split()
    assert cmd[0].startswith("/") and cmd[0].endswith("/twistd")
    assert cmd[1:4] == ["--nodaemon", "--pidfile=", "chat"]
    assert service["Restart"] == "on-failure"
    for key in ("DynamicUser", "NoNewPrivileges"):
        assert service[key] == "yes"
    assert service["ProtectSystem"] == "strict"


def test_the_template_runs_linked_relays_sharing_one_port():
    service = _unit("chatsvc@.service")["Service"]
    cmd = service["ExecStart"].split()
    assert "--reuse-port" in cmd and cmd[cmd.index("--redis") + 1] == "env:CHATSVC_REDIS"
    assert service["EnvironmentFile"] == "/etc/chatsvc/redis.env"


def test_activated_service_uses_the_systemd_endpoint():
    cmd = _unit("chatsvc-activated.service")["Service"]["ExecStart"]
    assert cmd.endswith("--port systemd:domain=INET6:index=0")
    socket_unit = _unit("chatsvc.socket")["Socket"]
    assert socket_unit["Service"] == "chatsvc-activated.service"
    # an IPv6 socket that takes IPv4 too: what domain=INET6 adopts
    assert socket_unit["ListenStream"].startswith("[::]:") and socket_unit["BindIPv6Only"] == "both"


def test_fake_socket_activation_gives_true_peer_addresses(tmp_path):
    """
    Do what systemd does with the unit pair: bind the socket as
    chatsvc.socket says, pass it as fd 3 with LISTEN_FDS, and start twistd
    as chatsvc-activated.service says (its --port).  IPv4 peers then have
    their true address, and the per-address limit counts them right.
    """
    import socket

    from tests.support import LineSocket, subprocess_env

    port_arg = _unit("chatsvc-activated.service")["Service"]["ExecStart"].split("--port ", 1)[1]
    listener = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # BindIPv6Only=both
    listener.bind(("::ffff:127.0.0.1", 0))  # loopback only, in the mapped form
    listener.listen(16)
    port = listener.getsockname()[1]
    launcher = (
        "import os, sys; os.dup2(int(sys.argv[1]), 3); "
        "os.environ.update(LISTEN_FDS='1', LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES='chatsvc'); "
        "os.execv(sys.executable, [sys.executable, '-c', 'from twisted.scripts.twistd import run; run()', "
        "'-n', '--pidfile=', 'chat', '--max-per-ip', '1', '--port', sys.argv[2]])"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", launcher, str(listener.fileno()), port_arg],
        pass_fds=(listener.fileno(),), cwd=tmp_path, env=subprocess_env(),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    listener.close()  # the relay has it now
    started = []
    try:
        for line in proc.stdout:  # blocks until the relay says it listens (or exits: EOF)
            started.append(line)
            if "listening on" in line:
                break
        assert "listening on" in "".join(started), "".join(started)
        first = LineSocket(socket.create_connection(("127.0.0.1", port), timeout=10))
        assert first.readline().startswith("HELLO ")
        second = LineSocket(socket.create_connection(("127.0.0.1", port), timeout=10))
        assert second.readline().startswith("ERROR too-many-connections ")
        first.close()
        second.close()
    finally:
        proc.terminate()
        rest, _ = proc.communicate(timeout=10)
    text = "".join(started) + rest
    assert "connection from ::ffff:127.0.0.1:" in text
    assert "refused ::ffff:127.0.0.1:" in text


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify(tmp_path):
    # Point ExecStart at a twistd that exists here, as on an installed host.
    twistd = Path(sys.executable).with_name("twistd")
    if not twistd.exists():
        twistd = Path(shutil.which("twistd") or "/bin/true")
    for name in UNITS:
        text = (REPO / "etc" / name).read_text().replace("/opt/chatsvc/venv/bin/twistd", str(twistd))
        (tmp_path / name).write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", *[str(tmp_path / n) for n in UNITS]],
        capture_output=True, text=True, timeout=60,
    )
    problems = [
        line for line in (result.stdout + result.stderr).splitlines()
        if "chatsvc" in line and "Documentation" not in line
    ]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr
