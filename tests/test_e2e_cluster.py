"""
Relays linked through a real redis-server act as one chat: the real
``twistd -n chat --redis`` processes, clients spread over them, the same
answers as from one relay; a relay killed with SIGKILL; Redis restarted.
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading

import pytest

from tests.redis_support import REDIS_SERVER, RedisServer
from tests.support import TWISTD, LineSocket, OutputWatch, RelayProcess, subprocess_env, without_ids

pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")

HELLO_RELAY = re.compile(r"^HELLO chatsvc 1 chatsvc relay (\w+), linked")


def start_relays(tmp_path, url: str, count: int, *extra: str) -> list[RelayProcess]:
    relays = []
    for _ in range(count):
        relay = RelayProcess(tmp_path, ["--redis", url, *extra])
        relay.start()
        relays.append(relay)
    return relays


@pytest.fixture
def linked(tmp_path, redis_db):
    """Start relays linked through a database of their own; stop them after."""
    started: list[RelayProcess] = []

    def start(count: int, *extra: str, url: str | None = None) -> list[RelayProcess]:
        relays = start_relays(tmp_path, url or redis_db, count, *extra)
        started.extend(relays)
        return relays

    yield start
    for relay in started:
        relay.stop()


def on(relay: RelayProcess, nick: str, *rooms: str) -> LineSocket:
    client = relay.connect()
    client.register(nick, *rooms)
    return client


def test_clients_on_three_relays_see_one_chat(linked):
    r1, r2, r3 = linked(3)
    alice = on(r1, "alice", "#lobby")
    bob = on(r2, "bob")
    bob.send("JOIN #lobby\n")
    bob.expect("JOIN #lobby bob", "NAMES #lobby alice bob", "ENDNAMES #lobby")
    alice.expect("JOIN #lobby bob")
    carol = on(r3, "carol")
    carol.send("JOIN #lobby\n")
    carol.expect("JOIN #lobby carol", "NAMES #lobby alice bob carol", "ENDNAMES #lobby")
    alice.expect("JOIN #lobby carol")
    bob.expect("JOIN #lobby carol")

    # room message: everyone else gets it once, the sender its OK
    alice.send("MSG #lobby hello-from-r1\n")
    alice.expect("OK MSG #lobby")
    bob.expect("MSG alice #lobby hello-from-r1")
    carol.expect("MSG alice #lobby hello-from-r1")
    # a private message to a member of another relay
    carol.send("MSG alice psst\n")
    carol.expect("OK MSG alice")
    alice.expect("MSG carol alice psst")
    # the same refusals as one relay gives
    bob.send("MSG nobody hi\n")
    bob.expect("ERROR no-such-nick nobody is called nobody")
    bob.send("NICK alice\n")
    bob.expect("ERROR nick-taken alice is already in use")
    bob.send("MSG #elsewhere hi\n")
    bob.expect("ERROR not-in-room you are not in #elsewhere")
    # ROOMS counts members on every relay
    carol.send("ROOMS\n")
    carol.expect("ROOM #lobby 3", "ENDROOMS")
    # one deployment, one key-derivation salt (docs/encryption.md, aes2)
    caps = set()
    for client in (alice, bob, carol):
        client.send("CAPS\n")
        caps.add(client.readline())
    assert len(caps) == 1 and " salt=" in caps.pop()
    # NICK, PART and QUIT reach the other relays' members
    bob.send("NICK robert\n")
    bob.expect("OK NICK robert", "NICK bob robert")
    alice.expect("NICK bob robert")
    carol.expect("NICK bob robert")
    carol.send("PART #lobby bye\n")
    carol.expect("PART #lobby carol bye")
    alice.expect("PART #lobby carol bye")
    bob.send("QUIT see you\n")
    alice.expect("QUIT robert see you")
    alice.send("NAMES #lobby\n")
    alice.expect("NAMES #lobby alice", "ENDNAMES #lobby")


def test_two_relays_same_nick_at_once_exactly_one_wins(linked):
    r1, r2 = linked(2)
    for round in range(15):
        a, b = r1.connect(), r2.connect()
        a.readline(), b.readline()  # HELLO
        nick = f"race{round}"
        # both lines leave before either answer can come back
        threads = [threading.Thread(target=c.send, args=(f"NICK {nick}\n",)) for c in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        answers = sorted([without_ids(a.readline()), without_ids(b.readline())])
        assert answers == [f"ERROR nick-taken {nick} is already in use", f"OK NICK {nick}"], answers
        a.close(), b.close()


def test_ids_increase_per_room_and_each_sender_keeps_its_order(linked):
    r1, r2, r3 = linked(3)
    alice, bob, carol = on(r1, "alice", "#ids"), on(r2, "bob", "#ids"), on(r3, "carol", "#ids")
    count = 60
    # both send at once, without waiting for answers (pipelined)
    threads = [
        threading.Thread(target=who.send, args=("".join(f"MSG #ids {name}-{i}\n" for i in range(count)),))
        for who, name in ((alice, "alice"), (bob, "bob"))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids, order = [], {"alice": [], "bob": []}
    while len(ids) < 2 * count:
        line = carol.readline()
        if " MSG " not in line:
            continue
        tag, _, sender, _, text = line.split(" ", 4)
        ids.append(int(tag.removeprefix("@id=")))
        order[sender].append(int(text.split("-")[1]))
    assert ids == sorted(ids) and len(set(ids)) == len(ids), "ids must strictly increase in the room"
    assert order == {"alice": list(range(count)), "bob": list(range(count))}


def test_history_and_resend_dedup_span_relays(linked):
    r1, r2, r3 = linked(3)
    bob = on(r3, "bob", "#h")
    alice = on(r1, "alice", "#h")
    bob.expect("JOIN #h alice")
    alice.send("@cid=abc123 MSG #h kept\n")
    ok = alice.readline()
    assert ok.startswith("@cid=abc123 OK MSG #h ")
    first_id = ok.rsplit(" ", 1)[1]
    bob.expect("MSG alice #h kept")
    alice.close()
    bob.expect("QUIT alice connection lost")
    # alice's client reconnects, to another relay, and resends (the ack was lost)
    again = on(r2, "alice", "#h")
    again.send("@cid=abc123 MSG #h kept\n")
    assert again.readline() == f"@cid=abc123 OK MSG #h {first_id}"
    # relayed once only: bob's next line is the marker below, not a copy
    again.send("MSG #h marker\n")
    bob.expect("JOIN #h alice", "MSG alice #h marker")
    # history is the same wherever it is asked for
    late = on(r3, "late", "#h")
    late.send("HISTORY #h after 0\n")
    lines = late.read_until("ENDHISTORY")
    texts = [line.rsplit(" ", 1)[1] for line in lines if " MSG " in line]
    assert texts == ["kept", "marker"], lines


def test_limits_hold_for_the_cluster_as_a_whole(linked):
    r1, r2 = linked(2, "--max-per-ip", "3")
    held = [on(r1, "m1"), on(r1, "m2"), on(r2, "m3")]
    refused = r2.connect()
    line = refused.readline()
    assert line == "ERROR too-many-connections at most 3 connections per address", line
    assert refused.at_eof()
    for client in held:
        client.close()


def test_members_of_a_killed_relay_leave_everywhere(linked):
    r1, r2 = linked(2)
    erin = on(r1, "erin", "#k")
    dave = on(r2, "dave", "#k")
    erin.expect("JOIN #k dave")
    r2.stop(signal.SIGKILL)
    # within the heartbeat's expiry (5 s) and one check (1 s), plus slack
    line = without_ids(erin.readline(timeout=15))
    assert line == "QUIT dave connection lost"
    erin.send("NAMES #k\n")
    erin.expect("NAMES #k erin", "ENDNAMES #k")
    # and the nick is free again
    back = on(r1, "dave")
    back.close()
    del dave


def test_relays_sharing_one_port_spread_clients(linked, tmp_path, redis_db):
    (first,) = linked(1, "--reuse-port")
    second = RelayProcess(tmp_path, ["--redis", redis_db, "--reuse-port"])
    second.start(port=first.port)  # the same port: SO_REUSEPORT
    try:
        seen: dict[str, LineSocket] = {}
        for _ in range(64):  # the kernel spreads connections over both
            client = first.connect()
            seen.setdefault(HELLO_RELAY.match(client.readline()).group(1), client)
            if len(seen) == 2:
                break
        assert len(seen) == 2, "every connection went to one relay"
        a, b = seen.values()
        a.send("NICK left\nJOIN #port\n")
        a.read_until("ENDNAMES #port")
        b.send("NICK right\nJOIN #port\n")
        b.read_until("ENDNAMES #port")
        a.expect("JOIN #port right")
        b.send("MSG #port across\n")
        a.expect("MSG right #port across")
    finally:
        second.stop()


def test_redis_restart_relays_keep_their_clients_and_resync(tmp_path):
    redis = RedisServer(tmp_path)
    redis.start()
    relays = start_relays(tmp_path, redis.url, 2)
    try:
        a, b = relays
        alice = on(a, "alice", "#r")
        bob = on(b, "bob", "#r")
        alice.expect("JOIN #r bob")
        redis.stop()
        alice.expect("NOTICE the link to the other relays is down: what you send waits until it is back")
        bob.expect("NOTICE the link to the other relays is down: what you send waits until it is back")
        # still served from the relay's own copy
        alice.send("NAMES #r\n")
        alice.expect("NAMES #r alice bob", "ENDNAMES #r")
        # a message sent meanwhile waits, and arrives once Redis is back
        alice.send("@cid=w1 MSG #r written-while-down\n")
        redis.start()  # empty: it kept nothing
        alice.expect("NOTICE the link to the other relays is back")
        line = alice.readline()
        assert line.startswith("@cid=w1 OK MSG #r "), line
        bob.expect("NOTICE the link to the other relays is back")
        bob.expect("MSG alice #r written-while-down")
        # and the chat goes on as before
        carol = on(b, "carol", "#r")
        alice.expect("JOIN #r carol")
        carol.send("MSG #r after\n")
        alice.expect("MSG carol #r after")
    finally:
        for relay in relays:
            relay.stop()
        redis.stop()


def test_a_file_between_clients_on_different_relays_goes_relay_to_relay(linked, clients, tmp_path):
    from tests.test_e2e_files import _send_a_file_and_check

    r1, r2 = linked(2)
    inbox = tmp_path / "bob-downloads"
    bob = clients(r2.port, "bob", "--downloads", str(inbox))
    _send_a_file_and_check(r1, bob, clients, tmp_path, inbox)  # alice on r1
    # The relay of the end that came second spliced its client with the
    # other relay's link port: the bytes went relay to relay, not through Redis.
    logs = r1.log() + r2.log()
    assert re.search(r"stream from link 127\.0\.0\.1:\d+ ended", logs), logs
    assert re.search(r"stream from \S+ ended: 31459\d\d bytes", logs), logs


def test_the_link_port_takes_stream_ends_only(linked):
    (r1,) = linked(1)
    port = int(re.search(r"relay link listening on .* port (\d+)\)", r1.log()).group(1))
    import socket

    link = LineSocket(socket.create_connection(("127.0.0.1", port), timeout=10))
    link.readline()  # HELLO
    link.send("NICK sneaky\n")
    assert link.readline() == "ERROR stream-invalid this port takes stream ends from other relays only; closing"
    assert link.at_eof()


def test_rediss_with_a_password_links_relays_and_a_wrong_password_says_so(tmp_path):
    from tests.certs import make_ca, make_server_cert

    ca = make_ca(tmp_path)
    key, cert = make_server_cert(tmp_path, ca)
    redis = RedisServer(tmp_path, password="pw", tls=(key, cert, ca[2]))
    redis.start()
    url = f"rediss://:pw@localhost:{redis.port}/0"
    relays = start_relays(tmp_path, url, 2, "--redis-ca", str(ca[2]))
    try:
        a, b = relays
        alice, bob = on(a, "alice", "#tls"), on(b, "bob", "#tls")
        alice.expect("JOIN #tls bob")
        bob.send("MSG #tls over-tls\n")
        alice.expect("MSG bob #tls over-tls")
        # a relay with the wrong password says why, in its log (stdout under -n)
        wrong = subprocess.Popen(
            TWISTD + ["-n", "--pidfile=", "chat", "--port", "tcp:0:interface=127.0.0.1",
                      "--redis", f"rediss://:nope@localhost:{redis.port}/0", "--redis-ca", str(ca[2])],
            cwd=tmp_path, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        try:
            OutputWatch(wrong.stdout).wait_for_text(
                "Redis refused this relay's login or database (see above): check the --redis URL")
        finally:
            wrong.terminate()
            wrong.wait(10)
    finally:
        for relay in relays:
            relay.stop()
        redis.stop()


def test_a_browser_member_on_one_relay_and_a_terminal_member_on_another(linked):
    from tests.test_webdoor import ws_register
    from tests.wsclient import WsClient

    web, plain = linked(1, "--web", "tcp:0:interface=127.0.0.1") + linked(1)
    browser = WsClient(web.web_port)
    ws_register(browser, "webby", "#mixed")
    terminal = on(plain, "termy", "#mixed")
    assert without_ids(browser.recv()) == "JOIN #mixed termy"
    terminal.send("MSG #mixed from-the-terminal\n")
    terminal.expect("OK MSG #mixed")
    assert without_ids(browser.recv()) == "MSG termy #mixed from-the-terminal"
    browser.send("MSG termy from-the-browser")
    assert browser.recv() == "OK MSG termy"
    terminal.expect("MSG webby termy from-the-browser")
    browser.close()


def test_after_a_failover_the_client_takes_its_nick_back_once_the_ghost_is_gone(linked, clients):
    # Issue #23, 11: rita's relay dies (kill -9); she reconnects to the other
    # while her ghost still holds "rita", so as rita_ -- and is rita again as
    # soon as the dead relay is declared gone.
    from tests.support import CuttableProxy

    r1, r2 = linked(2)
    proxy = CuttableProxy(r1.port)  # the address rita dials: r1 now, r2 after the failover
    try:
        bob = clients(r2.port, "bob")
        bob.wait_for("* in #lobby: bob")
        rita = clients(proxy.port, "rita")
        rita.wait_for("* in #lobby: bob, rita")
        rita.type("hello")
        bob.wait_for("[#lobby] rita: hello")
        pinned = len(bob.seen)
        proxy.target_port = r2.port
        r1.stop(signal.SIGKILL)
        rita.wait_for_prefix("* you are rita_ (rita was taken meanwhile)", timeout=30)
        rita.wait_for("* you are now known as rita", timeout=30)
        bob.wait_for("* rita_ is now known as rita")
        rita.type("still me")
        bob.wait_for("[#lobby] rita: still me")
        assert not any("first seen" in line or "key changed" in line for line in bob.seen[pinned:])  # the same pin
    finally:
        proxy.close()


def test_sealed_rooms_work_across_linked_relays(linked, clients):
    r1, r2 = linked(2)
    alice = clients(r1.port, "alice", "--room", "#ops")
    alice.wait_for_prefix("* in #ops: ")
    bob = clients(r2.port, "bob", "--room", "#ops")
    bob.wait_for_prefix("* in #ops: ")
    bob.type("hi from bob")
    alice.wait_for("[#ops] bob: hi from bob")
    alice.type("/seal")
    alice.type("/invite bob")
    bob.wait_for_prefix("* alice invited you to the sealed room #ops")
    bob.wait_for_prefix("* in #ops: ")
    alice.type("/rekey")  # a new epoch, across the link
    bob.wait_for("* alice re-keyed #ops (epoch 2); moved with it")
    bob.wait_for_prefix("* in #ops: ")
    alice.type("across the link, epoch 2")
    bob.wait_for("[#ops] alice: across the link, epoch 2")
