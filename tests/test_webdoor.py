"""
The WebSocket door and the page's web site, against the real ``twistd``:
a browser's connection is one more member of the same relay, under the
same limits, and the site serves only the page, with strict headers.
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

import pytest

from chatsvc.webdoor import forwarded_for
from chatsvc.webnames import WebNames
from tests.support import RelayProcess
from tests.wsclient import Refused, WsClient


@pytest.fixture(scope="module")
def relay(tmp_path_factory):
    proc = RelayProcess(
        tmp_path_factory.mktemp("web"),
        ["--web", "tcp:0:interface=127.0.0.1", "--max-line", "2048", "--max-per-ip", "6"],
    )
    proc.start()
    yield proc
    proc.stop()


def get(port: int, path: str):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def ws_register(client: WsClient, nick: str, *rooms: str) -> None:
    assert client.recv().startswith("HELLO chatsvc 1 ")
    client.send(f"NICK {nick}")
    assert client.recv() == f"OK NICK {nick}"
    for room in rooms:
        client.send(f"JOIN {room}")
        client.read_until(f"ENDNAMES {room}")


# --- the site -------------------------------------------------------------------------------


def test_the_page_and_its_modules_are_served_with_strict_headers(relay):
    status, headers, body = get(relay.web_port, "/")
    assert status == 200 and b'<script type="module" src="app.js">' in body
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    csp = headers["Content-Security-Policy"]
    for rule in ("default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'",
                 "frame-ancestors 'none'"):
        assert rule in csp
    assert "unsafe" not in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    status, headers, body = get(relay.web_port, "/crypto.js")
    assert status == 200 and headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert b"AES-GCM" in body


@pytest.mark.parametrize("path", ["/nope.js", "/web/app.js", "/../pyproject.toml", "/app.js/x", "/webpage.py"])
def test_nothing_but_the_page_is_served(relay, path):
    status, headers, body = get(relay.web_port, path)
    assert status == 404 and body == b"not found\n"
    assert "default-src 'none'" in headers["Content-Security-Policy"]


# --- one relay, two doors ----------------------------------------------------------------------


def test_a_websocket_member_and_a_tcp_member_share_a_room(relay):
    web = WsClient(relay.web_port)
    tcp = relay.connect()
    try:
        ws_register(web, "webby", "#both")
        tcp.register("tcpy", "#both")
        assert web.recv() == "JOIN #both tcpy"
        web.send("@cid=c1 MSG #both aes2:AAAA")
        assert web.recv().startswith("@cid=c1 OK MSG #both ")
        assert tcp.readline().endswith("MSG webby #both aes2:AAAA")
        tcp.send("MSG webby aes2:BBBB\n")
        assert web.recv() == "MSG tcpy webby aes2:BBBB"
        assert tcp.readline() == "OK MSG webby"
        web.send("QUIT bye")
        assert tcp.readline() == "QUIT webby bye"
        assert web.expect_close().code == 1000
    finally:
        web.close()
        tcp.close()


def test_the_same_errors_as_over_tcp(relay):
    web = WsClient(relay.web_port)
    try:
        assert web.recv().startswith("HELLO ")
        web.send("JOIN #x")
        assert web.recv().startswith("ERROR not-registered ")
        web.send("NICK bad nick")
        assert web.recv().startswith("ERROR bad-syntax ")
        web.send("CAPS")
        caps = web.recv()
        assert caps.startswith("CAPS ") and "max-line=2048" in caps and "salt=" in caps
        web.send("PING one\nPING two")  # a line break would smuggle a second line
        assert web.recv().startswith("ERROR bad-syntax one line per message")
        web.send("PING ok")
        assert web.recv() == "PONG ok"
    finally:
        web.close()


def test_a_flood_is_slowed_never_dropped(relay):
    web = WsClient(relay.web_port)
    try:
        ws_register(web, "flooder")
        for i in range(120):  # burst 50, then 20 a second
            web.send(f"PING {i}")
        assert [web.recv() for _ in range(120)] == [f"PONG {i}" for i in range(120)]
    finally:
        web.close()


def test_a_websocket_stream_end_pairs_with_a_tcp_one(relay):
    token = "W" * 22
    web = WsClient(relay.web_port)
    tcp = relay.connect()
    try:
        assert web.recv().startswith("HELLO ")
        web.send(f"STREAM {token} send")
        web.send_binary(b"early bytes wait;")  # before the partner: held, not lost
        assert tcp.readline().startswith("HELLO ")
        tcp.send(f"STREAM {token} recv\n".encode() + b"\0" * 8)
        assert web.recv_bytes(8) == b"\0" * 8
        blob = bytes(range(256)) * 800  # 200 KiB, several messages
        for i in range(0, len(blob), 30000):
            web.send_binary(blob[i : i + 30000])
        wanted = b"early bytes wait;" + blob
        got = b""
        tcp.sock.settimeout(10)
        while len(got) < len(wanted):
            chunk = tcp.sock.recv(65536)
            assert chunk, f"closed after {len(got)} bytes: {got[:200]!r}"
            got += chunk
        assert got == wanted
        web.send("PING not now")  # text in a stream: refused, and the partner is closed
        assert web.expect_close().code == 4003
        assert tcp.at_eof()
    finally:
        web.close()
        tcp.close()


def test_two_websocket_stream_ends_pair(relay):
    token = "V" * 22
    sender, receiver = WsClient(relay.web_port), WsClient(relay.web_port)
    try:
        for end, role in ((sender, "send"), (receiver, "recv")):
            assert end.recv().startswith("HELLO ")
            end.send(f"STREAM {token} {role}")
        receiver.send_binary(b"\0" * 8)
        assert sender.recv_bytes(8) == b"\0" * 8
        sender.send_binary(b"frame bytes")
        assert receiver.recv_bytes(11) == b"frame bytes"
        sender.sock.close()  # the sender goes: the receiver is closed after what it was sent
        assert receiver.expect_close().code == 1000
    finally:
        sender.close()
        receiver.close()


# --- what a hostile WebSocket client gets ------------------------------------------------------


def test_a_message_over_the_line_limit_is_refused_while_it_arrives(relay):
    web = WsClient(relay.web_port)
    try:
        assert web.recv().startswith("HELLO ")
        web.send("PING " + "x" * 5000)
        assert web.expect_close().code == 1009
    finally:
        web.close()


def test_a_binary_frame_gets_a_clear_close(relay):
    web = WsClient(relay.web_port)
    try:
        assert web.recv().startswith("HELLO ")
        web.send_frame(0x2, b"NICK bin")
        closed = web.expect_close()
        assert closed.code == 4003 and "text" in closed.reason
    finally:
        web.close()


def test_invalid_utf8_closes_with_1007(relay):
    web = WsClient(relay.web_port)
    try:
        assert web.recv().startswith("HELLO ")
        web.send_frame(0x1, b"NICK \xff\xfe")
        assert web.expect_close().code == 1007
    finally:
        web.close()


def test_a_foreign_origin_is_refused_and_the_page_s_own_accepted(relay):
    with pytest.raises(Refused, match="403"):
        WsClient(relay.web_port, origin="https://evil.example")
    with pytest.raises(Refused, match="403"):
        WsClient(relay.web_port, origin=f"http://localhost:{relay.web_port}")  # another host name
    with pytest.raises(Refused, match="40[03]"):
        WsClient(relay.web_port, origin="null")  # autobahn itself refuses it (400)
    WsClient(relay.web_port).close()  # http://127.0.0.1:<port>, as the page
    WsClient(relay.web_port, origin=None).close()  # no Origin: not a browser, like a TCP client


def test_per_address_limits_count_both_doors(relay):
    held = [relay.connect() for _ in range(3)] + [WsClient(relay.web_port) for _ in range(3)]
    try:
        # the web port counts a socket from the moment it is accepted: the
        # seventh is refused before any request, with the site's headers
        with pytest.raises(Refused, match="503"):
            WsClient(relay.web_port)
        tcp = relay.connect()
        assert tcp.readline().startswith("ERROR too-many-connections ")
        tcp.close()
    finally:
        for client in held:
            client.close()


def test_shutdown_says_why_to_websocket_members(tmp_path):
    proc = RelayProcess(tmp_path, ["--web", "tcp:0:interface=127.0.0.1"])
    proc.start()
    try:
        web = WsClient(proc.web_port)
        ws_register(web, "stayer")
        proc.proc.terminate()
        assert web.recv().startswith("ERROR server-shutdown ")
        assert web.expect_close().code == 1000
        assert proc.proc.wait(15) in (0, -15)  # twistd ends by its own signal once clean
    finally:
        proc.stop()


def test_a_websocket_client_that_stops_reading_is_cut_off_alone(tmp_path):
    proc = RelayProcess(tmp_path, ["--web", "tcp:0:interface=127.0.0.1", "--max-sendq", "200000",
                                   "--flood-burst", "0", "--flood-rate", "0"])
    proc.start()
    try:
        sleeper = WsClient(proc.web_port)
        sleeper.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        ws_register(sleeper, "sleeper", "#busy")
        talker, listener = proc.connect(), proc.connect()
        talker.register("talker", "#busy")
        listener.register("listener", "#busy")
        talker.readline()  # JOIN #busy listener
        payload = "x" * 30000
        seen = []
        for i in range(300):  # 9 MB: far past what the sockets buffer
            talker.send(f"MSG #busy {payload}\n")
            seen.append(listener.readline())
            if seen[-1].startswith("QUIT"):
                seen.append(listener.readline())
        # The listener, reading, got every message; the sleeper alone went.
        assert sum(line.endswith(payload) for line in seen) == 300
        assert "QUIT sleeper send queue exceeded" in seen
        assert "(web) is not reading" in proc.log()
    finally:
        proc.stop()


# --- the Origin rule alone ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "origin, host, allowed, secure, ok",
    [
        ("http://127.0.0.1:8080", "127.0.0.1:8080", (), False, True),
        ("HTTPS://Chat.Example.org", "chat.example.org", (), True, True),
        ("https://chat.example.org", "chat.example.org", (), False, False),  # the scheme is the port's
        ("http://127.0.0.1:8080", "127.0.0.1:8080", (), True, False),
        ("https://chat.example.org", "chat.example.org:8443", (), True, False),
        ("https://chat.example.org:443", "chat.example.org", (), True, True),  # the default port, spelt out
        ("https://evil.example", "chat.example.org", (), True, False),
        ("null", "chat.example.org", (), True, False),
        ("file://", "chat.example.org", (), True, False),
        ("http://127.0.0.1:8080/chat", "127.0.0.1:8080", (), False, False),  # a path: malformed
        ("http://user@127.0.0.1:8080", "127.0.0.1:8080", (), False, False),
        ("https://chat.example.org", "127.0.0.1:8080", ("https://chat.example.org",), False, True),
        ("https://chat.example.org/", "x", ("https://chat.example.org",), False, False),
        ("http://127.0.0.1:8080", "127.0.0.1:8080", ("https://chat.example.org",), False, False),
    ],
)
def test_origin_rule(origin, host, allowed, secure, ok):
    names = WebNames(origins=frozenset(allowed), secure=secure, addresses=[])
    assert names.origin_allowed(origin, host, "192.0.2.1") is ok


@pytest.mark.parametrize(
    "host, ok",
    [("127.0.0.1:8080", True), ("localhost", True), ("[::1]:8080", True), ("LOCALHOST:1", True),
     ("chat.example.org", True), ("192.0.2.7:8443", True), ("rebind.evil.example:8080", False),
     ("127.0.0.1.evil.example", False), ("", False), (None, False), ("a b", False), ("user@localhost", False)],
)
def test_host_rule(host, ok):
    names = WebNames(hosts=frozenset({"chat.example.org"}), addresses=["192.0.2.7"])
    assert names.host_allowed(host) is ok


# --- behind a reverse proxy ---------------------------------------------------------------------


class Peer:
    def __init__(self, host):
        self.host = host


def test_forwarded_for_is_believed_only_from_a_trusted_proxy():
    proxies = frozenset({"127.0.0.1"})
    headers = {"x-forwarded-for": "6.6.6.6, 203.0.113.7"}  # the client may claim anything first
    assert forwarded_for(Peer("127.0.0.1"), headers, proxies) == "203.0.113.7"
    assert forwarded_for(Peer("198.51.100.1"), headers, proxies) is None  # not the proxy: its own address counts
    assert forwarded_for(Peer("127.0.0.1"), {}, proxies) is None
    assert forwarded_for(Peer("127.0.0.1"), {"x-forwarded-for": "not-an-ip"}, proxies) is None
    assert forwarded_for(Peer("127.0.0.1"), headers, frozenset()) is None
    assert forwarded_for(Peer("127.0.0.1"), {"x-forwarded-for": "2001:db8::1"}, proxies) == "2001:db8::1"


def test_behind_a_trusted_proxy_each_browser_counts_on_its_own(tmp_path):
    proc = RelayProcess(tmp_path, ["--web", "tcp:0:interface=127.0.0.1", "--web-proxy", "127.0.0.1",
                                   "--max-per-ip", "2"])
    proc.start()
    held = []
    try:
        for n in range(4):  # four browsers through the proxy, two per address
            held.append(WsClient(proc.web_port, headers={"X-Forwarded-For": f"203.0.113.{n // 2}"}))
            assert held[-1].recv().startswith("HELLO ")
        with pytest.raises(Refused, match="503"):  # a third from one browser's address, counted by it
            WsClient(proc.web_port, headers={"X-Forwarded-For": "203.0.113.0"})
    finally:
        for client in held:
            client.close()
        proc.stop()


def test_the_page_is_gzipped_for_browsers_that_take_it(relay):
    import gzip

    request = urllib.request.Request(f"http://127.0.0.1:{relay.web_port}/session.js", headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Encoding"] == "gzip"
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
        assert b"class ChatSession" in gzip.decompress(response.read())


def test_timeouts_apply_to_websocket_members(tmp_path):
    proc = RelayProcess(tmp_path, ["--web", "tcp:0:interface=127.0.0.1", "--register-timeout", "1"])
    proc.start()
    try:
        web = WsClient(proc.web_port)
        assert web.recv().startswith("HELLO ")
        # no NICK: the sweep (once a second) closes it, saying why
        assert web.recv(timeout=10).startswith("ERROR registration-timeout ")
        assert web.expect_close().code == 1000
    finally:
        proc.stop()


def test_a_stream_end_s_binary_messages_are_bounded_too(relay):
    web = WsClient(relay.web_port)
    try:
        assert web.recv().startswith("HELLO ")
        web.send(f"STREAM {'B' * 22} send")
        tcp = relay.connect()
        assert tcp.readline().startswith("HELLO ")
        tcp.send(f"STREAM {'B' * 22} recv\n".encode() + b"\0" * 8)
        assert web.recv_bytes(8) == b"\0" * 8  # paired
        web.send_binary(b"x" * (256 * 1024 + 1))  # over STREAM_MESSAGE_MAX
        assert web.expect_close().code == 1009
        assert tcp.at_eof()  # and its partner is closed
        tcp.close()
    finally:
        web.close()
