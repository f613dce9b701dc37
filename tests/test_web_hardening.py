"""
The web port as hardened as a production web server, against the real
``twistd``: every socket counted and timed from accept, the site's headers
on every response, exact Origin and Host, revalidation by ETag, and the
TLS policy on every TLS door (checked with Python's own TLS client, suite
by suite; testssl.sh's report is in docs/operating.md).
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time

import pytest

from tests.certs import make_ca, make_server_cert
from tests.support import RelayProcess
from tests.wsclient import Refused, WsClient

SECURITY = ("Content-Security-Policy", "X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy")


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    proc = RelayProcess(tmp_path_factory.mktemp("hardened"),
                        ["--web", "tcp:0:interface=127.0.0.1", "--web-host", "chat.example.org"])
    proc.start()
    yield proc
    proc.stop()


def raw(port: int, request: bytes) -> tuple[int, dict, bytes]:
    """Send ``request`` as it is; the status, headers and body of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def request(port: int, method: str, path: str, host: str = "127.0.0.1", headers: dict | None = None,
            version: str = "HTTP/1.1") -> tuple[int, dict, bytes]:
    lines = [f"{method} {path} {version}", f"Host: {host}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return raw(port, ("\r\n".join(lines) + "\r\n\r\n").encode())


def hardened(headers: dict) -> None:
    for name in SECURITY:
        assert name.lower() in headers, (name, headers)
    assert "autobahn" not in str(headers).lower() and "twisted" not in str(headers).lower()


UPGRADE = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
           "Sec-WebSocket-Version": "13"}


# --- every response hardened ------------------------------------------------------------------


@pytest.mark.parametrize("method, path, status", [
    ("GET", "/", 200), ("GET", "/app.js", 200), ("HEAD", "/", 200), ("GET", "/nope", 404),
    ("GET", "/chat", 426), ("POST", "/", 405), ("PUT", "/", 405), ("DELETE", "/app.js", 405), ("OPTIONS", "*", 405),
])
def test_every_response_carries_the_sites_headers(web, method, path, status):
    got, headers, body = request(web.web_port, method, path)
    assert got == status, body
    hardened(headers)
    assert headers["server"] == "chatsvc"
    if status == 405:
        assert headers["allow"] == "GET, HEAD"
    if status == 426:
        assert headers["upgrade"] == "websocket" and b"AutobahnPython" not in body


def test_a_malformed_request_gets_a_400_and_a_huge_one_431_with_the_headers_too(web):
    status, headers, _ = raw(web.web_port, b"NOT A REQUEST LINE AT ALL\r\n\r\n")
    assert status == 400
    hardened(headers)
    status, headers, _ = raw(web.web_port, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
    assert status == 431
    hardened(headers)


def test_the_handshake_names_no_library(web):
    client = WsClient(web.web_port)
    assert "AutobahnPython" not in client.response_head
    client.close()


# --- Host and Origin ------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["rebind.evil.example", "rebind.evil.example:8080", "127.0.0.1.evil.example"])
def test_a_host_the_relay_is_not_reached_by_is_refused(web, host):
    status, headers, body = request(web.web_port, "GET", "/", host=host)
    assert status == 421 and b"--web-host" in body
    hardened(headers)
    # DNS rebinding: the page's own (rebound) origin, to the socket
    status, headers, _ = request(web.web_port, "GET", "/chat", host=host, headers={**UPGRADE, "Origin": f"http://{host}"})
    assert status == 421


def test_names_given_with_web_host_are_served(web):
    status, _, _ = request(web.web_port, "GET", "/", host="chat.example.org")
    assert status == 200


@pytest.mark.parametrize("origin", [
    "https://127.0.0.1:{port}",  # the scheme is the port's
    "http://127.0.0.1:{port}/chat",  # not an origin
    "http://127.0.0.1:1",  # another port
    "null",
    "http://evil.example",
])
def test_origins_are_compared_exactly(web, origin):
    port = web.web_port
    status, headers, body = request(port, "GET", "/chat", host=f"127.0.0.1:{port}",
                                    headers={**UPGRADE, "Origin": origin.format(port=port)})
    assert status == 403, body
    hardened(headers)


def test_two_origin_headers_get_the_documented_403(web):
    port = web.web_port
    lines = [f"GET /chat HTTP/1.1", f"Host: 127.0.0.1:{port}", *(f"{k}: {v}" for k, v in UPGRADE.items()),
             f"Origin: http://127.0.0.1:{port}", f"Origin: http://127.0.0.1:{port}", "", ""]
    status, headers, _ = raw(port, "\r\n".join(lines).encode())
    assert status == 403
    hardened(headers)


def test_the_pages_own_origin_opens_the_socket(web):
    client = WsClient(web.web_port, origin=f"http://127.0.0.1:{web.web_port}")
    assert client.recv().startswith("HELLO ")
    client.close()


def test_an_http_1_0_upgrade_is_refused(web):
    status, headers, _ = request(web.web_port, "GET", "/chat", headers=UPGRADE, version="HTTP/1.0")
    assert status == 505
    hardened(headers)


# --- revalidation ---------------------------------------------------------------------------------


def test_files_revalidate_by_etag_and_vary_by_encoding(web):
    status, headers, body = request(web.web_port, "GET", "/session.js", headers={"Accept-Encoding": "gzip"})
    assert status == 200 and headers["vary"] == "Accept-Encoding" and headers["content-encoding"] == "gzip"
    etag = headers["etag"]
    status, headers, body = request(web.web_port, "GET", "/session.js", headers={"If-None-Match": etag})
    assert status == 304 and body == b""
    hardened(headers)
    status, _, body = request(web.web_port, "GET", "/session.js", headers={"If-None-Match": '"stale"'})
    assert status == 200 and b"ChatSession" in body


# --- counted and timed from accept ---------------------------------------------------------------------


def test_half_sent_requests_count_against_the_per_address_limit(tmp_path):
    proc = RelayProcess(tmp_path, ["--web", "tcp:0:interface=127.0.0.1", "--max-per-ip", "5"])
    proc.start()
    held = []
    try:
        for _ in range(5):  # five sockets that sent half a request
            sock = socket.create_connection(("127.0.0.1", proc.web_port), timeout=10)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            held.append(sock)
        status, headers, _ = request(proc.web_port, "GET", "/")
        assert status == 503
        hardened(headers)
        tcp = proc.connect()  # counted across doors
        assert tcp.readline().startswith("ERROR too-many-connections ")
        tcp.close()
    finally:
        for sock in held:
            sock.close()
        proc.stop()


def test_a_trickled_request_is_cut_off_at_the_registration_timeout(tmp_path):
    proc = RelayProcess(tmp_path, ["--web", "tcp:0:interface=127.0.0.1", "--register-timeout", "1"])
    proc.start()
    try:
        sock = socket.create_connection(("127.0.0.1", proc.web_port), timeout=10)
        sock.sendall(b"GET / HTTP/1.1\r\n")
        answer = b""
        for n in range(100):  # a header line every 0.2 s: the idle timer alone would never fire
            try:
                sock.sendall(b"X-Slow-%d: 1\r\n" % n)
            except OSError:
                break
            sock.settimeout(0.2)
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                break
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert b"Content-Security-Policy" in answer
        sock.close()
        # and an idle keep-alive connection goes too, after its response
        keep = http.client.HTTPConnection("127.0.0.1", proc.web_port, timeout=10)
        keep.request("GET", "/favicon.svg")
        assert keep.getresponse().read()
        sock = keep.sock
        sock.settimeout(10)
        assert sock.recv(65536).startswith(b"HTTP/1.1 408 ")
    finally:
        proc.stop()


def test_a_waiting_stream_end_that_closes_frees_its_place(tmp_path):
    proc = RelayProcess(tmp_path, ["--max-per-ip", "2"])
    proc.start()
    try:
        first = proc.connect()
        first.readline()
        first.send("STREAM " + "A" * 22 + " send\n")
        first.close()  # gone while waiting for its partner
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # its place comes back at once, not after 60 s
            a, b = proc.connect(), proc.connect()
            ok = a.readline().startswith("HELLO") and b.readline().startswith("HELLO")
            a.close()
            b.close()
            if ok:
                return
        raise AssertionError("the closed stream end kept its place")
    finally:
        proc.stop()


# --- TLS ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_relays(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    ca = make_ca(folder)
    key, cert = make_server_cert(folder, ca, rsa_key=True)  # RSA: static-RSA suites would be possible
    relays = {}
    for profile in ("intermediate", "modern"):
        proc = RelayProcess(folder, ["--tls-profile", profile, "--web", f"ssl:0:privateKey={key}:certKey={cert}:interface=127.0.0.1",
                                     "--web-hsts", "31536000"],
                            listen=f"ssl:{{port}}:privateKey={key}:certKey={cert}:interface=127.0.0.1")
        proc.start()
        relays[profile] = proc
    yield relays
    for proc in relays.values():
        proc.stop()


def handshake(port: int, version=ssl.TLSVersion.TLSv1_2, ciphers: str | None = None, maximum=None) -> str | None:
    """The suite a TLS 1.x client with these ciphers gets, or None if the handshake fails."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = version
    context.maximum_version = maximum or version
    if ciphers:
        context.set_ciphers(ciphers)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            with context.wrap_socket(sock) as tls:
                return tls.cipher()[0]
    except (ssl.SSLError, ConnectionError, OSError):
        return None


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # (Python's own TLS 1.1, asked for on purpose)
@pytest.mark.parametrize("door", ["port", "web_port"])
def test_the_intermediate_profile_offers_ecdhe_with_aead_only(tls_relays, door):
    port = getattr(tls_relays["intermediate"], door)
    assert handshake(port, ciphers="ECDHE-RSA-AES128-GCM-SHA256") == "ECDHE-RSA-AES128-GCM-SHA256"
    assert handshake(port, ciphers="ECDHE-RSA-CHACHA20-POLY1305") == "ECDHE-RSA-CHACHA20-POLY1305"
    assert handshake(port, ssl.TLSVersion.TLSv1_3) is not None
    for cbc in ("ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES256-SHA384", "AES128-SHA"):
        assert handshake(port, ciphers=cbc) is None, cbc  # CBC: LUCKY13 to a scanner
    for static in ("AES128-GCM-SHA256", "AES256-GCM-SHA384"):
        assert handshake(port, ciphers=static) is None, static  # static RSA: no forward secrecy
    assert handshake(port, ssl.TLSVersion.TLSv1_1) is None


def test_the_modern_profile_is_tls_1_3_only(tls_relays):
    port = tls_relays["modern"].port
    assert handshake(port, ssl.TLSVersion.TLSv1_3) is not None
    assert handshake(port, ciphers="ECDHE-RSA-AES128-GCM-SHA256") is None


def test_hsts_when_asked_for(tls_relays):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", tls_relays["intermediate"].web_port, context=context, timeout=10)
    conn.request("GET", "/")
    response = conn.getresponse()
    assert response.getheader("Strict-Transport-Security") == "max-age=31536000"
    conn.close()
