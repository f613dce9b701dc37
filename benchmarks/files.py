"""
Benchmark a file transfer between two terminal clients through the relay,
against a reference measured in the same run.

    python benchmarks/files.py              # 200 MiB
    python benchmarks/files.py --mib 1024

chatsvc: the real ``twistd chat`` and two real clients (``/send`` to the
room, auto-accepted), timed from the offer to "saved" -- encryption,
hashing, the relay's splice and writing the file included.  While it runs,
alice also sends bob a chat line every 50 ms and bob's arrival delays are
measured; the relay's resident memory is sampled.

reference: only the unavoidable work -- one process AES-GCM-encrypts 1 MiB
frames and hashes the file, a bare Twisted byte splice passes them on, and
another process decrypts, hashes and writes the file.

Run by hand; the numbers go into the README with the date.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from tests.support import PipedClient, RelayProcess  # noqa: E402  (the same helpers the tests use)

SPLICE = """
import sys
from twisted.internet import protocol, reactor
waiting = []
class End(protocol.Protocol):
    def connectionMade(self):
        if waiting:
            other = waiting.pop()
            self.other, other.other = other, self
            for a, b in ((self, other), (other, self)):
                b.transport.registerProducer(a.transport, True)
                a.transport.resumeProducing()
        else:
            self.other = None
            waiting.append(self)
            self.transport.pauseProducing()
    def dataReceived(self, data):
        self.other.transport.write(data)
    def connectionLost(self, reason):
        if self.other is not None:
            self.other.transport.loseConnection()
f = protocol.Factory.forProtocol(End)
port = reactor.listenTCP(0, f, interface="127.0.0.1")
print(port.getHost().port, flush=True)
reactor.run()
"""

SEND = """
import hashlib, os, socket, struct, sys, time
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
path, port = sys.argv[1], int(sys.argv[2])
aead, digest = AESGCM(bytes(32)), hashlib.sha256()
sock = socket.create_connection(("127.0.0.1", port))
print(time.time(), flush=True)  # connected: the clock starts
with open(path, "rb") as f:
    while block := f.read(1 << 20):
        digest.update(block)
        nonce = os.urandom(12)
        sealed = aead.encrypt(nonce, block, b"aad")
        sock.sendall(struct.pack(">I", 12 + len(sealed)) + nonce + sealed)
sock.close()
"""

RECV = """
import hashlib, socket, struct, sys, time
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
path, port = sys.argv[1], int(sys.argv[2])
aead, digest = AESGCM(bytes(32)), hashlib.sha256()
sock = socket.create_connection(("127.0.0.1", port))
buf = bytearray()
with open(path, "wb") as out:
    while chunk := sock.recv(1 << 20):
        buf += chunk
        while len(buf) >= 4:
            (n,) = struct.unpack_from(">I", buf)
            if len(buf) < 4 + n:
                break
            body = bytes(buf[4:4 + n]); del buf[:4 + n]
            block = aead.decrypt(body[:12], body[12:], b"aad")
            digest.update(block)
            out.write(block)
print(time.time(), flush=True)  # the file is written and hashed
"""


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def reference(source: Path, workdir: Path) -> float:
    splice = subprocess.Popen([sys.executable, "-c", SPLICE], stdout=subprocess.PIPE, text=True)
    try:
        port = int(splice.stdout.readline())
        target = workdir / "reference.out"
        receiver = subprocess.Popen([sys.executable, "-c", RECV, str(target), str(port)], stdout=subprocess.PIPE,
                                    text=True)
        time.sleep(0.5)  # the receiver is the first end: it waits for its partner
        sender = subprocess.Popen([sys.executable, "-c", SEND, str(source), str(port)], stdout=subprocess.PIPE,
                                  text=True)
        started = float(sender.stdout.readline())
        ended = float(receiver.stdout.readline())
        sender.wait()
        receiver.wait()
        return ended - started
    finally:
        splice.kill()


def chatsvc(source: Path, size: int, workdir: Path, extra_receivers: int = 0) -> dict:
    relay = RelayProcess(workdir)
    relay.start()
    inbox = workdir / "inbox"
    config = str(workdir / "config")
    accept = str(size // 2**20 + 1)
    bob = PipedClient(relay.port, "bob", "--downloads", str(inbox), "--auto-accept-mb", accept,
                      config_dir=config + "-bob")
    bob.wait_for("* in #lobby: bob")
    others = []
    for n in range(extra_receivers):
        other = PipedClient(relay.port, f"r{n}", "--downloads", str(workdir / f"inbox{n}"), "--auto-accept-mb",
                            accept, config_dir=f"{config}-r{n}")
        other.wait_for_prefix("* in #lobby: ")
        others.append(other)
    alice = PipedClient(relay.port, "alice", config_dir=config + "-alice")
    alice.wait_for_prefix("* in #lobby: ")
    peak = [rss_kib(relay.proc.pid)]
    idle = peak[0]
    bob_peak = [rss_kib(bob.proc.pid)]
    bob_idle = bob_peak[0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kib(relay.proc.pid))
            bob_peak[0] = max(bob_peak[0], rss_kib(bob.proc.pid))
            time.sleep(0.05)

    def chat() -> None:
        n = 0
        while not stop.is_set():
            alice.type(f"/msg bob ping {n} {time.monotonic_ns()}")
            n += 1
            time.sleep(0.05)

    threading.Thread(target=sample, daemon=True).start()
    started = time.monotonic()
    alice.type(f"/send {source}")
    threading.Thread(target=chat, daemon=True).start()
    delays = []
    saved = None
    pattern = re.compile(r"^\[alice → you\] ping \d+ (\d+)$")
    deadline = time.monotonic() + 600
    while saved is None and time.monotonic() < deadline:
        for line in bob._next_lines(1):
            match = pattern.match(line)
            if match:
                delays.append((time.monotonic_ns() - int(match.group(1))) / 1e6)
            elif line.startswith("* saved "):
                saved = line
                break
    for other in others:  # everyone has it before the clock stops
        other.wait_for_prefix("* saved ", timeout=600)
    elapsed = time.monotonic() - started
    stop.set()
    for client in (alice, bob, *others):
        client.kill()
    relay.stop()
    if saved is None:
        raise SystemExit(f"the transfer did not finish; bob saw {bob.seen[-5:]}")
    path = Path(re.match(r"\* saved \S+ from alice as (.+) \(", saved).group(1))
    identical = hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(source.read_bytes()).digest()
    delays.sort()
    log = relay.log()
    return {
        "seconds": elapsed,
        "identical": identical,
        "p99_ms": delays[int(0.99 * (len(delays) - 1))] if delays else float("nan"),
        "chat_lines": len(delays),
        "rss_growth_mib": (peak[0] - idle) / 1024,
        "receiver_rss_growth_mib": (bob_peak[0] - bob_idle) / 1024,
        "plaintext_in_log": source.name.encode().hex() in log,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=200)
    parser.add_argument("--receivers", type=int, default=1, help="people in the room who all take the file")
    args = parser.parse_args()
    size = args.mib * 2**20
    with tempfile.TemporaryDirectory(prefix="chatsvc-files-") as tmp:
        workdir = Path(tmp)
        source = workdir / "video.bin"
        with open(source, "wb") as f:
            for _ in range(args.mib):
                f.write(os.urandom(2**20))
        ref = reference(source, workdir)
        run = chatsvc(source, size, workdir, args.receivers - 1)
    mib = size / 2**20
    print(f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, {args.mib} MiB")
    print(f"reference (AES-GCM frames, SHA-256, file write, bare splice): {mib / ref:.0f} MiB/s ({ref:.2f} s)")
    print(
        f"chatsvc (two clients through twistd chat): {mib / run['seconds']:.0f} MiB/s ({run['seconds']:.2f} s), "
        f"{run['seconds'] and (ref / run['seconds']):.2f}x the reference; bytes identical: {run['identical']}"
    )
    print(f"chat during the transfer: {run['chat_lines']} lines, p99 {run['p99_ms']:.1f} ms")
    print(f"relay RSS growth during the transfer: {run['rss_growth_mib']:.1f} MiB; "
          f"bob's client: {run['receiver_rss_growth_mib']:.1f} MiB")
    if args.receivers > 1:
        print(f"{args.receivers} receivers, each over its own stream (the sender encrypts per stream): "
              f"{args.receivers * mib / run['seconds']:.0f} MiB/s delivered in all")


if __name__ == "__main__":
    main()
