"""The systemd units parse and reference the right twistd invocation."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO

UNITS = ["chatsvc.service", "chatsvc.socket", "chatsvc-activated.service"]


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(REPO / "etc" / name)
    return parser


@pytest.mark.parametrize("name", ["chatsvc.service", "chatsvc-activated.service"])
def test_service_runs_twistd_in_foreground_without_pidfile(name):
    service = _unit(name)["Service"]
    cmd = service["ExecStart"].split()
    assert cmd[0].startswith("/") and cmd[0].endswith("/twistd")
    assert cmd[1:4] == ["--nodaemon", "--pidfile=", "chat"]
    assert service["Restart"] == "on-failure"
    for key in ("DynamicUser", "NoNewPrivileges"):
        assert service[key] == "yes"
    assert service["ProtectSystem"] == "strict"


def test_activated_service_uses_the_systemd_endpoint():
    cmd = _unit("chatsvc-activated.service")["Service"]["ExecStart"]
    assert cmd.endswith("--port systemd:domain=INET:index=0")
    assert _unit("chatsvc.socket")["Socket"]["Service"] == "chatsvc-activated.service"


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
