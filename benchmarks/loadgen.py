"""
One load-generator process: a slice of the benchmark's clients, on one lean
asyncio event loop (stdlib only, independent of the server's Twisted code).

Driven by ``run.py`` over stdin/stdout, one JSON object per line:

1. it connects its clients (and, for chatsvc, registers and joins them),
   then prints ``{"event": "ready", ...}``;
2. on ``go`` from stdin its senders start sending, and every client counts
   and checks what it receives;
3. when every client has what it expects (or nothing arrives for a while)
   it prints ``{"event": "done", ...}`` with counts, latencies and its own
   CPU time, so the report can show whether the generator kept up.

Payloads are ``<sender>:<seq>:<send time ns>:`` padded to the size asked
for; the send time is ``time.monotonic_ns()``, one clock for every process
on the machine.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time

SEP = b":"


def payload(sender: int, seq: int, size: int) -> bytes:
    head = b"%d:%d:%d:" % (sender, seq, time.monotonic_ns())
    return head + b"x" * max(0, size - len(head))


class Client(asyncio.Protocol):
    def __init__(self, gen: "Generator", index: int) -> None:
        self.gen = gen
        self.index = index
        spec = gen.spec
        sends = index in spec["senders"]
        self.expected = (spec["total_senders"] - (1 if sends else 0)) * spec["messages"]
        self.sample = index in spec["samplers"]
        self.nick = f"b{index}"
        self.buffer = b""
        self.registered = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()
        self.valid = 0
        self.invalid = 0
        self.last_seq: dict[int, int] = {}
        self.out_of_order = 0
        self.last_time = 0

    # -- asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport
        if self.gen.mode == "chatsvc":
            transport.write(b"NICK %s\nJOIN %s\n" % (self.nick.encode(), self.gen.room))
        elif self.gen.mode == "baseline":
            self.registered.set_result(None)
        # "bare" says ENDNAMES once it has taken the connection in

    def connection_lost(self, exc) -> None:
        if not self.closed.done():
            self.closed.set_result(exc)
        if not self.registered.done():
            self.registered.set_exception(ConnectionError(f"{self.nick}: closed while joining"))

    def data_received(self, data: bytes) -> None:
        data = self.buffer + data
        end = data.rfind(b"\n")
        if end < 0:
            self.buffer = data
            return
        self.buffer = data[end + 1 :]
        lines = data[:end].split(b"\n")
        if not self.registered.done():
            for line in lines:
                if line.startswith(b"ENDNAMES"):
                    self.registered.set_result(None)
                    break
                if line.startswith(b"ERROR"):
                    self.registered.set_exception(ConnectionError(line.decode(errors="replace")))
                    return
        # Count from the start: senders in another generator process may
        # begin a moment before this one has read its "go".
        self._count(lines)

    def _count(self, lines: list[bytes]) -> None:
        size = self.gen.size
        chatsvc = self.gen.mode == "chatsvc"
        now = time.monotonic_ns()
        for line in lines:
            if chatsvc:
                if line.startswith(b"@"):
                    line = line.split(b" ", 1)[-1]  # the message id tag
                if not line.startswith(b"MSG "):
                    continue  # acknowledgements and notices
                body = line.split(b" ", 3)[-1]
            else:
                if line == b"ENDNAMES":
                    continue  # the bare relay's "taken in"
                body = line
            if len(body) != size:
                self.invalid += 1
                continue
            self.valid += 1
            if self.sample:
                try:
                    sender, seq, sent, _ = body.split(SEP, 3)
                    sender, seq = int(sender), int(seq)
                    self.gen.latencies.append((now - int(sent)) / 1e6)
                except ValueError:
                    self.valid -= 1
                    self.invalid += 1
                    continue
                if seq <= self.last_seq.get(sender, -1):
                    self.out_of_order += 1
                self.last_seq[sender] = seq
        if self.valid or self.invalid:
            self.last_time = now
        if self.valid >= self.expected and self.gen.all_done is not None:
            self.gen.finished_one(self)


class Generator:
    def __init__(self, spec: dict) -> None:
        self.spec = spec
        self.mode = spec["mode"]
        self.room = spec.get("room", "#bench").encode()
        self.size = spec["size"]
        self.latencies: list[float] = []
        self.clients: list[Client] = []
        self.complete: set[int] = set()
        self.all_done: asyncio.Future | None = None

    def finished_one(self, client: Client) -> None:
        self.complete.add(client.index)
        if len(self.complete) == len(self.clients) and not self.all_done.done():
            self.all_done.set_result(None)

    async def connect_all(self) -> float:
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        limit = asyncio.Semaphore(self.spec.get("concurrency", 256))

        async def one(index: int) -> Client:
            async with limit:
                ports = self.spec["ports"]  # several: linked relays, dealt round-robin
                _, client = await loop.create_connection(
                    lambda: Client(self, index), self.spec["host"], ports[index % len(ports)]
                )
                await asyncio.wait_for(client.registered, 60)
                return client

        self.clients = list(await asyncio.gather(*(one(i) for i in self.spec["clients"])))
        return time.monotonic() - started

    async def run(self) -> dict:
        spec = self.spec
        loop = asyncio.get_running_loop()
        self.all_done = loop.create_future()
        senders = set(spec["senders"])
        for client in self.clients:
            if client.valid >= client.expected:
                self.complete.add(client.index)  # (everything arrived early)
        if len(self.complete) == len(self.clients):
            self.all_done.set_result(None)
        go = time.monotonic_ns()
        tasks = [asyncio.ensure_future(self.send(c, spec)) for c in self.clients if c.index in senders]
        settle = spec.get("settle", 3.0)
        deadline = time.monotonic() + spec.get("timeout", 120)
        while not self.all_done.done() and time.monotonic() < deadline:
            before = sum(c.valid + c.invalid for c in self.clients)
            try:
                await asyncio.wait_for(asyncio.shield(self.all_done), settle)
            except asyncio.TimeoutError:
                if sum(c.valid + c.invalid for c in self.clients) == before and all(t.done() for t in tasks):
                    break  # nothing more is coming
        for t in tasks:
            t.cancel()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "event": "done",
            "go_ns": go,
            "last_ns": max((c.last_time for c in self.clients), default=go),
            "valid": sum(c.valid for c in self.clients),
            "invalid": sum(c.invalid for c in self.clients),
            "expected": sum(c.expected for c in self.clients),
            "out_of_order": sum(c.out_of_order for c in self.clients),
            "complete_clients": len(self.complete),
            "clients": len(self.clients),
            "latencies_ms": self.latencies,
            "cpu_s": usage.ru_utime + usage.ru_stime,
        }

    async def send(self, client: Client, spec: dict) -> None:
        rate = spec.get("rate", 0)
        prefix = b"MSG " + self.room + b" " if self.mode == "chatsvc" else b""
        for seq in range(spec["messages"]):
            client.transport.write(prefix + payload(client.index, seq, self.size) + b"\n")
            if rate:
                await asyncio.sleep(1 / rate)
            elif seq % 50 == 49:
                await asyncio.sleep(0)  # let receivers in this process run


async def main() -> None:
    spec = json.loads(sys.argv[1])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    gen = Generator(spec)
    try:
        connect_time = await gen.connect_all()
    except Exception as e:  # report, don't hang the orchestrator
        print(json.dumps({"event": "error", "error": repr(e)}), flush=True)
        return
    print(json.dumps({"event": "ready", "connect_s": connect_time}), flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.readline()  # "go"
    print(json.dumps(await gen.run()), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
