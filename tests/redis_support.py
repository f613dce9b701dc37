"""
A real ``redis-server`` for the tests of linked relays: the Debian
package's binary, started as a subprocess on a free loopback port with no
persistence (never the system service), once per test session.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

from tests.support import OutputWatch

REDIS_SERVER = shutil.which("redis-server")
#: One per test that links relays (an empty database each), instead of 16.
DATABASES = 256


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    def __init__(self, workdir: Path, password: str | None = None, tls: tuple[Path, Path, Path] | None = None) -> None:
        """``tls``: (key, certificate, CA) -- then it speaks TLS only."""
        self.workdir = workdir
        self.password = password
        self.tls = tls
        self.extra = ["--requirepass", password] if password else []
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        ports = ["--port", str(self.port)]
        if self.tls:
            key, cert, ca = self.tls
            ports = ["--port", "0", "--tls-port", str(self.port), "--tls-key-file", str(key), "--tls-cert-file",
                     str(cert), "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no"]
        self.proc = subprocess.Popen(
            [REDIS_SERVER, *ports, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--databases", str(DATABASES), "--dir", str(self.workdir), *self.extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        # It says so once it accepts connections (its log is on stdout).
        try:
            OutputWatch(self.proc.stdout).wait_for_text("Ready to accept connections", timeout)
        except AssertionError as e:
            self.stop()
            raise RuntimeError(f"redis-server did not start: {e}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> None:
        """Killed and started again on the same port: empty, as after a crash without persistence."""
        self.stop()
        self.start()

    def command(self, *args: str):
        """One command over a fresh socket (RESP); returns the reply decoded, roughly."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            if self.tls:
                import ssl

                s = ssl.create_default_context(cafile=str(self.tls[2])).wrap_socket(s, server_hostname="localhost")
            reader = s.makefile("rb")
            if self.password:
                s.sendall(_request("AUTH", self.password))
                _read_reply(reader)
            s.sendall(_request(*args))
            return _read_reply(reader)


def _request(*args: str) -> bytes:
    return (f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)).encode()


def _read_reply(reader):
    line = reader.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:].decode()
    if kind in (b"+", b"-"):
        return rest
    if kind == b":":
        return int(rest)
    if kind == b"$":
        if int(rest) < 0:
            return None
        data = reader.read(int(rest) + 2)[:-2]
        return data.decode()
    if kind == b"*":
        return [_read_reply(reader) for _ in range(int(rest))] if int(rest) >= 0 else None
    raise ValueError(f"unexpected reply {line!r}")
