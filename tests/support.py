"""Test helpers shared by several test modules."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import tempfile
import sys
import threading
import time
import uuid
from pathlib import Path

from twisted.internet.testing import StringTransport

from chatsvc.relay import Relay
from chatsvc.tcpdoor import ChatFactory

REPO = Path(__file__).resolve().parent.parent

_ID_TAG = re.compile(r"^@id=\d+ ")
_OK_MSG_ID = re.compile(r"^(OK MSG \S+) \d+$")


def without_ids(line: str) -> str:
    """
    A server line without its message id (the ``@id=`` tag of a relayed
    message, the id ending ``OK MSG``), for tests about other things; ids
    themselves are tested in test_history.py.
    """
    return _OK_MSG_ID.sub(r"\1", _ID_TAG.sub("", line))

# Run twistd from this interpreter, with the checkout first on the path, so
# the subprocess sees this tree's plugin and package even if an older copy
# is installed.
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


class OutputWatch:
    """
    A subprocess's output (a binary pipe), read by a thread of its own so the
    pipe never fills and no wait can block forever: waits are woken by the
    lines themselves, not by polling.
    """

    def __init__(self, stream) -> None:
        self.seen: list[str] = []
        self.ended = False
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream) -> None:
        for raw in stream:
            self._lines.put(raw.decode("utf-8", "replace").rstrip("\n"))
        self._lines.put(None)

    def next_lines(self, timeout: float):
        """Output lines as they come, until timeout or end of output."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                return
            if line is None:
                self._lines.put(None)  # for the next caller
                self.ended = True
                return
            self.seen.append(line)
            yield line

    def wait_for_text(self, text: str, timeout: float = 15.0) -> str:
        """The next line holding ``text``."""
        for line in self.next_lines(timeout):
            if text in line:
                return line
        raise AssertionError(f"never saw {text!r} in:\n" + "\n".join(self.seen[-40:]))


# --- in-memory connections --------------------------------------------------


class FakeClient:
    """A server protocol on a StringTransport, with helpers to talk to it."""

    def __init__(self, factory: ChatFactory, host: str = "10.0.0.1", port: int = 1234) -> None:
        from twisted.internet.address import IPv4Address

        self.transport = StringTransport(peerAddress=IPv4Address("TCP", host, port))
        self.protocol = factory.buildProtocol(self.transport.getPeer())
        self.protocol.makeConnection(self.transport)

    def send(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.protocol.dataReceived(data)

    def lines(self) -> list[str]:
        """Everything received since the last call, as lines without ids."""
        return [without_ids(line) for line in self.raw_lines()]

    def raw_lines(self) -> list[str]:
        raw = self.transport.value()
        self.transport.clear()
        return raw.decode("utf-8").splitlines()

    def drop(self) -> None:
        from twisted.internet.error import ConnectionDone

        self.protocol.connectionLost(ConnectionDone())

    @property
    def closed(self) -> bool:
        return self.transport.disconnecting


def make_factory(clock=None, limits=None, **relay_kw) -> ChatFactory:
    """A factory on a fake clock: nothing in these tests waits for real time."""
    from twisted.internet.task import Clock

    relay_kw.setdefault("now", lambda: 0.0)  # ids then count 1, 2, 3...
    relay = Relay(**relay_kw)
    if limits is not None and limits.max_line != relay.max_line:
        relay.max_line = limits.max_line
    return ChatFactory(relay, limits, clock=clock or Clock())


def registered(factory: ChatFactory, nick: str, *rooms: str) -> FakeClient:
    client = FakeClient(factory)
    client.send(f"NICK {nick}\n")
    for room in rooms:
        client.send(f"JOIN {room}\n")
    client.lines()
    return client


# --- the real server in a subprocess -----------------------------------------


class RelayProcess:
    """``twistd -n chat`` on 127.0.0.1 with an ephemeral port."""

    LISTENING = re.compile(r"chatsvc relay listening on .* \(127\.0\.0\.1 port (\d+)\)")
    WEB_LISTENING = re.compile(r"web client listening on .* \((?:127\.0\.0\.1|0\.0\.0\.0|::) port (\d+)\)")

    def __init__(self, workdir: Path, extra_args=(), listen: str = "tcp:{port}:interface=127.0.0.1") -> None:
        self.workdir = workdir
        self.extra_args = list(extra_args)
        self.listen = listen  # an endpoint description with {port} in it
        self.log_path = workdir / f"relay-{id(self)}.log"
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None

    def start(self, port: int | None = None, timeout: float = 20.0) -> None:
        self._log = open(self.log_path, "ab")
        listen = self.listen.format(port=port or 0)
        self._log_offset = self.log_path.stat().st_size
        self.proc = subprocess.Popen(
            TWISTD + ["-n", "--pidfile=", "chat", "--port", listen, *self.extra_args],
            cwd=self.workdir,
            env=subprocess_env(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log()[self._log_offset :]
            match = self.LISTENING.search(log)
            web = self.WEB_LISTENING.search(log)
            if match and (web or "--web" not in self.extra_args):
                self.port = int(match.group(1))
                self.web_port = int(web.group(1)) if web else None
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"twistd exited early:\n{self.log()}")
            time.sleep(0.05)
        raise RuntimeError(f"twistd did not start listening:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def connect(self) -> "LineSocket":
        return LineSocket(socket.create_connection(("127.0.0.1", self.port), timeout=10))

    def pair(self, room: str = "#a") -> tuple["LineSocket", "LineSocket"]:
        """alice and bob, registered and in ``room``; alice has seen bob join."""
        alice, bob = self.connect(), self.connect()
        alice.register("alice", room)
        bob.register("bob", room)
        alice.expect(f"JOIN {room} bob")
        return alice, bob

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


class LineSocket:
    """A blocking TCP client that reads whole lines, for end-to-end tests."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def send(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.sock.sendall(data)

    def readline(self, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no complete line; have {self.buffer[:200]!r}")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"connection closed; have {self.buffer[:200]!r}")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode("utf-8")

    def expect(self, *lines: str) -> None:
        """The next lines are these (ids aside)."""
        for wanted in lines:
            got = without_ids(self.readline())
            assert got == wanted, f"expected {wanted!r}, got {got!r}"

    def read_until(self, prefix: str) -> list[str]:
        """Lines (ids aside) up to and including one starting with prefix."""
        seen = []
        while True:
            line = without_ids(self.readline())
            seen.append(line)
            if line.startswith(prefix):
                return seen

    def register(self, nick: str, *rooms: str) -> None:
        self.readline()  # HELLO
        self.send(f"NICK {nick}\n")
        self.expect(f"OK NICK {nick}")
        for room in rooms:
            self.send(f"JOIN {room}\n")
            self.read_until(f"ENDNAMES {room}")

    def at_eof(self, timeout: float = 10.0) -> bool:
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buffer += chunk
        except (TimeoutError, socket.timeout):
            return False
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


class CuttableProxy:
    """
    A TCP forwarder on loopback whose links can be cut: ``cut()`` drops
    every connection through it and refuses new ones until ``restore()``.
    Stands in for a network outage between one client and the relay.
    """

    def __init__(self, target_port: int) -> None:
        import threading

        self.target_port = target_port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.listener.listen(16)
        self.listener.settimeout(0.1)
        self.links: list[socket.socket] = []
        self.lock = threading.Lock()
        self.up = True
        self.running = True
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        import threading

        while self.running:
            try:
                client, _ = self.listener.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            if not self.up:
                client.close()  # the network is down: refused
                continue
            server = socket.create_connection(("127.0.0.1", self.target_port))
            with self.lock:
                self.links += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        self.up = False
        with self.lock:
            links, self.links = self.links, []
        for s in links:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def restore(self) -> None:
        self.up = True

    def close(self) -> None:
        self.running = False
        self.cut()
        self.listener.close()


# --- client processes -------------------------------------------------------

CLIENT = [sys.executable, "-m", "chatsvc.client"]
PASSPHRASE = "test passphrase: purple elephants dance at dawn"


#: A folder where the clients the tests start keep the keys they derived
#: (chatsvc/client/aesgcm.py, _pbkdf2): 0.4 s of CPU each, a hundred times over.
KDF_CACHE = tempfile.mkdtemp(prefix="chatsvc-test-kdf-")


def client_env(passphrase: str = PASSPHRASE, config_dir: str | None = None) -> dict[str, str]:
    """
    A client's environment: the passphrase, and a config directory of its
    own (the replay state lives there), never the user's real one.
    """
    import tempfile

    env = subprocess_env()
    env["CHATSVC_PASSPHRASE"] = passphrase
    env["CHATSVC_TEST_KDF_CACHE"] = KDF_CACHE  # each passphrase's keys derived once per test run
    env["XDG_CONFIG_HOME"] = config_dir or tempfile.mkdtemp(prefix="chatsvc-test-config-")
    return env


class PipedClient:
    """``python -m chatsvc.client`` with pipes for stdin and stdout."""

    def __init__(
        self, port: int | None, nick: str, *extra: str, passphrase: str | None = PASSPHRASE,
        config_dir: str | None = None
    ) -> None:
        env = client_env(passphrase or "", config_dir)
        if passphrase is None:  # e.g. in by invitation link alone
            del env["CHATSVC_PASSPHRASE"]
        where = ["127.0.0.1", "--port", str(port)] if port is not None else []  # None: --join names it
        self.proc = subprocess.Popen(
            CLIENT + [*where, "--nick", nick, *extra],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env,
        )
        self.output = OutputWatch(self.proc.stdout)

    @property
    def seen(self) -> list[str]:
        return self.output.seen

    @property
    def ended(self) -> bool:
        return self.output.ended

    @ended.setter
    def ended(self, value: bool) -> None:
        self.output.ended = value

    def type(self, text: str) -> None:
        self.proc.stdin.write((text + "\n").encode())
        self.proc.stdin.flush()

    def _next_lines(self, timeout: float):
        return self.output.next_lines(timeout)

    def wait_for(self, wanted: str, timeout: float = 20.0) -> list[str]:
        for line in self._next_lines(timeout):
            if line == wanted:
                return self.seen
        raise AssertionError(f"never saw {wanted!r}; saw {self.seen!r}")

    def wait_for_prefix(self, prefix: str, timeout: float = 20.0) -> str:
        for line in self._next_lines(timeout):
            if line.startswith(prefix):
                return line
        raise AssertionError(f"never saw a line starting {prefix!r}; saw {self.seen!r}")

    def drain(self, timeout: float) -> None:
        """Collect whatever arrives within timeout seconds."""
        for _ in self._next_lines(timeout):
            pass

    def rest(self, timeout: float = 20.0) -> list[str]:
        """Everything printed until the process closes its output."""
        before = len(self.seen)
        self.ended = False
        for _ in self._next_lines(timeout):
            pass
        if not self.ended:
            raise AssertionError(f"output did not end; got {self.seen[before:]!r}")
        return self.seen[before:]

    def finish(self, timeout: float = 20.0) -> tuple[int, str]:
        self.proc.stdin.close()
        self.rest(timeout)
        return self.proc.wait(timeout), self.proc.stderr.read().decode()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# --- the interactive client in a real terminal ---------------------------------


class Tmux:
    """
    ``python -m chatsvc.client`` in a real terminal (a tmux pane), read back
    as the screen shows it.  Waits are driven by tmux's control mode, which
    reports every bit of output the pane gets: each one is a chance to look
    at the screen again, with no polling interval.
    """

    def __init__(self, port: int, nick: str, *extra: str, columns: int = 120, passphrase: str | None = PASSPHRASE) -> None:
        self.name = f"chatsvc-{uuid.uuid4().hex[:8]}"
        env = client_env(passphrase or "")
        keys = ["PYTHONPATH", "XDG_CONFIG_HOME", "CHATSVC_TEST_KDF_CACHE"] + (["CHATSVC_PASSPHRASE"] if passphrase else [])
        env_args = [arg for key in keys for arg in ("-e", f"{key}={env[key]}")]
        command = " ".join(CLIENT + ["127.0.0.1", "--port", str(port), "--nick", nick, *extra]) + "; sleep 30"
        subprocess.run(["tmux", "new-session", "-d", "-s", self.name, "-x", str(columns), "-y", "30",
                        *env_args, command], check=True)
        self._events: queue.Queue[str | None] = queue.Queue()
        self._control = subprocess.Popen(
            ["tmux", "-C", "attach", "-t", self.name],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, errors="replace",
        )
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self._control.stdout:
            if line.startswith("%output"):
                self._events.put(line)
        self._events.put(None)

    def screen(self, styled: bool = False) -> str:
        command = ["tmux", "capture-pane", "-p", *(["-e"] if styled else []), "-t", self.name]
        return subprocess.run(command, capture_output=True, text=True).stdout

    def rows(self) -> list[str]:
        return [row.rstrip() for row in self.screen().splitlines() if row.strip()]

    def wait(self, test, what: str, timeout: float = 20.0) -> list[str]:
        """The screen's rows once ``test(rows)`` holds; looked at again whenever the pane gets output."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.rows()
            if test(rows):
                return rows
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0 or self._events.get(timeout=remaining) is None:
                    break
            except queue.Empty:
                break
        raise AssertionError(f"{what} never appeared:\n{self.screen()}")

    def keys(self, *keys: str, literal: bool = False) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, *(["-l"] if literal else []), *keys], check=True)

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)
        self._control.kill()
        self._control.wait()
