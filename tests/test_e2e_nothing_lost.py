"""Level 4: nothing lost across a server crash or a client's outage."""

from __future__ import annotations

import re
import signal
import threading
import time


from tests.support import CuttableProxy

NICKS = ("alice", "bob", "carol")
PER_SENDER = 25
LINE = re.compile(r"^\[#lobby\] (\w+): (\w+)-(\d+)(?: \((?:missed|earlier), [\d:?]+\))?$")


def chat_in_background(client, nick, pause_at=None, pause=None):
    """Type PER_SENDER numbered lines, 40 ms apart, from a thread."""

    def run():
        for n in range(1, PER_SENDER + 1):
            if pause_at is not None and n == pause_at:
                pause.wait(30)
            client.type(f"{nick}-{n}")
            time.sleep(0.04)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def received_from_others(client, nick):
    """{sender: [numbers in the order shown]} from a client's output."""
    got: dict[str, list[int]] = {}
    for line in client.seen:
        match = LINE.match(line)
        if match and match.group(1) != nick and match.group(1) == match.group(2):
            got.setdefault(match.group(1), []).append(int(match.group(3)))
    return got


def wait_for_all(clients_by_nick, timeout=60):
    deadline = time.monotonic() + timeout
    want = {n: {o: list(range(1, PER_SENDER + 1)) for o in NICKS if o != n} for n in NICKS}
    while time.monotonic() < deadline:
        for nick, client in clients_by_nick.items():
            client.drain(0.2)
        got = {n: received_from_others(c, n) for n, c in clients_by_nick.items()}
        if got == want:
            return got
    return {n: received_from_others(c, n) for n, c in clients_by_nick.items()}


def assert_everyone_got_everything(people):
    """Each message of each sender, exactly once and in order, at every other."""
    got = wait_for_all(people)
    expected = list(range(1, PER_SENDER + 1))
    for nick in NICKS:
        for other in NICKS:
            if other != nick:
                assert got[nick].get(other) == expected, (nick, other, got[nick].get(other))


def start_three(relay, clients):
    started = {}
    for nick in NICKS:
        started[nick] = clients(relay.port, nick)
        started[nick].wait_for("* you joined #lobby")
    for nick, client in started.items():
        client.wait_for_prefix("* in #lobby:")
    return started


def test_kill_9_mid_conversation_loses_and_duplicates_nothing(relay_process, clients, tmp_path):
    store = tmp_path / "history.sqlite"
    relay = relay_process("--store", str(store))
    people = start_three(relay, clients)
    threads = [chat_in_background(c, n) for n, c in people.items()]
    people["bob"].wait_for("[#lobby] alice: alice-8")  # about a third of the conversation
    port = relay.port
    relay.stop(signal.SIGKILL)
    for client in people.values():
        client.wait_for_prefix("! connection to ")
    relay.start(port=port)
    for t in threads:
        t.join(30)
    assert_everyone_got_everything(people)
    for client in people.values():
        assert any(line.startswith("* reconnected to ") for line in client.seen)
        assert client.finish()[0] == 0


def test_one_client_cut_off_for_seconds_misses_nothing(relay_process, clients):
    relay = relay_process()
    proxy = CuttableProxy(relay.port)
    try:
        people = {nick: clients(relay.port, nick) for nick in ("alice", "bob")}
        people["carol"] = clients(proxy.port, "carol")  # carol's link can fail
        for client in people.values():
            client.wait_for_prefix("* in #lobby:")
        resume = threading.Event()
        threads = [
            chat_in_background(people["alice"], "alice"),
            chat_in_background(people["bob"], "bob"),
            chat_in_background(people["carol"], "carol", pause_at=10, pause=resume),
        ]
        people["carol"].wait_for("[#lobby] alice: alice-5")
        proxy.cut()  # carol's network goes away for a while
        people["carol"].wait_for_prefix(f"! connection to 127.0.0.1:{proxy.port} lost")
        resume.set()  # she goes on typing meanwhile
        people["carol"].wait_for("[#lobby] carol: carol-12 (pending)")
        proxy.restore()
        people["carol"].wait_for_prefix(f"* reconnected to 127.0.0.1:{proxy.port}", timeout=30)
        for t in threads:
            t.join(30)
        assert_everyone_got_everything(people)
        assert any("(missed, " in line for line in people["carol"].seen)
        assert any("(pending)" in line for line in people["carol"].seen)
    finally:
        proxy.close()
