"""Level 4: the limits of the real twistd relay, with real sockets."""

from __future__ import annotations

import signal
import socket
import threading
import time
from pathlib import Path

from tests.support import LineSocket, without_ids

NO_FLOOD_LIMIT = ("--flood-burst", "0", "--flood-rate", "0")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def non_reader(relay, nick: str) -> LineSocket:
    """A client in #a that will read nothing more: a tiny receive buffer, so
    the server's side of the connection fills fast."""
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect(("127.0.0.1", relay.port))
    client = LineSocket(raw)
    client.register(nick, "#a")
    return client


def test_client_that_never_reads_is_cut_off_others_get_everything(relay_process):
    relay = relay_process("--max-sendq", "262144", *NO_FLOOD_LIMIT)
    sleeper = non_reader(relay, "sleeper")
    reader, sender = relay.connect(), relay.connect()
    reader.register("reader", "#a")
    sender.register("sender", "#a")
    reader.read_until("JOIN #a sender")
    before = rss_kib(relay.proc.pid)

    # 10 MB: more than the kernel's socket buffers on loopback (up to 4 MB
    # send + the receiver's) can absorb, so the server's own queue must grow.
    count, body = 10_000, "p" * 1000
    received: list[str] = []
    notices: list[str] = []

    def read_all():
        while len(received) < count:
            line = without_ids(reader.readline(timeout=30))
            (received if line.startswith("MSG ") else notices).append(line)

    thread = threading.Thread(target=read_all)
    thread.start()
    sender.send("".join(f"MSG #a {n:05d}{body}\n" for n in range(count)))
    thread.join(60)
    assert len(received) == count
    assert [line.split(" ", 3)[3][:5] for line in received] == [f"{n:05d}" for n in range(count)]
    # The sleeper was dropped; the others saw it go, and the server's memory
    # did not grow with the megabytes it could not deliver.
    if not any(line.startswith("QUIT sleeper") for line in notices):
        notices += reader.read_until("QUIT sleeper")
    assert "QUIT sleeper send queue exceeded" in notices
    assert rss_kib(relay.proc.pid) - before < 40 * 1024
    assert "is not reading; dropping it" in relay.log()
    sleeper.close()


def test_flooding_client_is_slowed_not_dropped(relay_process):
    relay = relay_process("--flood-burst", "10", "--flood-rate", "300")
    listener, flooder = relay.pair()
    flooder.send("".join(f"MSG #a flood {n}\n" for n in range(600)))
    for n in range(600):
        listener.expect(f"MSG bob #a flood {n}")
    flooder.send("PING still-connected\n")
    replies = flooder.read_until("PONG")
    assert replies[-1] == "PONG still-connected"
    assert replies.count("OK MSG #a") == 600
    assert "sends faster than 300 lines/s; slowing it down" in relay.log()


def test_silent_client_is_pinged_then_dropped(relay_process):
    import threading

    relay = relay_process("--idle-timeout", "1", "--ping-timeout", "1")
    awake, silent = relay.pair()
    # awake answers every ping, all along (with 1-second timeouts, however
    # slow this machine), and records what it is told
    told, quit_seen = [], threading.Event()

    def answer() -> None:
        try:
            while not quit_seen.is_set():
                line = awake.readline(timeout=30)
                told.append(line)
                if line.startswith("PING "):
                    awake.send("PONG " + line.split()[1] + "\n")
                elif line.startswith("QUIT bob"):
                    quit_seen.set()
        except (EOFError, TimeoutError):
            quit_seen.set()

    threading.Thread(target=answer, daemon=True).start()
    ping = silent.read_until("PING ")[-1]
    assert ping.startswith("PING ")
    assert silent.read_until("ERROR")[-1].startswith("ERROR ping-timeout ")
    assert silent.at_eof()
    assert quit_seen.wait(30)
    assert "QUIT bob ping timeout" in told, told


def test_unregistered_connection_times_out(relay_process):
    relay = relay_process("--register-timeout", "1")
    lurker = relay.connect()
    assert lurker.readline().startswith("HELLO ")
    assert lurker.readline().startswith("ERROR registration-timeout ")
    assert lurker.at_eof()


def test_connection_limits(relay_process):
    relay = relay_process("--max-clients", "3", "--max-per-ip", "2")

    def connect_from(source: str) -> LineSocket:
        return LineSocket(socket.create_connection(("127.0.0.1", relay.port), timeout=10, source_address=(source, 0)))

    a1, a2 = connect_from("127.0.0.2"), connect_from("127.0.0.2")
    for c in (a1, a2):
        assert c.readline().startswith("HELLO ")
    a3 = connect_from("127.0.0.2")
    assert a3.readline().startswith("ERROR too-many-connections ")
    assert a3.at_eof()
    b1 = connect_from("127.0.0.3")
    assert b1.readline().startswith("HELLO ")
    c1 = connect_from("127.0.0.4")
    assert c1.readline().startswith("ERROR server-full ")
    assert c1.at_eof()
    a1.close()
    # Once the server has noticed the close, there is room again.
    deadline = time.monotonic() + 10
    while True:
        again = connect_from("127.0.0.4")
        first = again.readline()
        if first.startswith("HELLO ") or time.monotonic() > deadline:
            break
        again.close()
        time.sleep(0.05)
    assert first.startswith("HELLO ")


def test_sigterm_closes_everyone_quickly_even_non_readers(relay_process):
    relay = relay_process("--max-sendq", "0", *NO_FLOOD_LIMIT)
    stuck = non_reader(relay, "stuck")
    alice, bob = relay.connect(), relay.connect()
    alice.register("alice", "#a")
    bob.register("bob", "#a")
    # Fill the stuck client's buffers: it reads nothing from now on.
    bob.send("".join(f"MSG #a {'q' * 1000}\n" for _ in range(2000)))
    alice.sock.settimeout(30)
    seen = 0
    while seen < 2000:
        if without_ids(alice.readline()).startswith("MSG bob"):
            seen += 1
    relay.proc.send_signal(signal.SIGTERM)
    # twistd re-raises the signal it stopped for, to report it as it came;
    # the stuck client cannot hold it up (aborted after the 3 s grace)
    assert relay.proc.wait(timeout=10) in (0, -signal.SIGTERM)
    assert alice.read_until("ERROR")[-1] == "ERROR server-shutdown the server is shutting down"
    assert alice.at_eof()
    stuck.close()
