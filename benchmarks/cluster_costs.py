"""
What one linked relay costs per member and per log entry, and what Redis
takes -- the figures "Running at scale" in the README extrapolates from.

    python benchmarks/cluster_costs.py [--members 100000] [--entries 200000]

1. apply: a relay's replica applies room messages (no member of its own in
   the room: what every relay does for every message sent anywhere) --
   entries/s, the ceiling on messages per second for the whole chat;
2. members: the memory a relay spends on each member connected to
   *another* relay (every relay keeps the whole chat's state);
3. redis: entries/s that one redis-server takes through the relay's append
   script, in batches as the relay sends them, and its memory per entry.

Run by hand; nothing here is timed in the tests.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatsvc.cluster import JOIN, MSG, NICK, Replica, new_relay  # noqa: E402


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def measure_apply(entries: int) -> float:
    replica = Replica("here", new_relay(1000, 65536, 250, False, False))
    replica.apply(Replica.entry("there", 1, 1, 1, NICK, "sender", "10.0.0.1", "10.0.0.1:1"))
    replica.apply(Replica.entry("there", 1, 2, 1, JOIN, "#room", None))
    payload = "x" * 200  # a short message's ciphertext
    raw = [Replica.entry("there", 1, 3 + i, 2 + i, MSG, "#room", payload, f"c{i}") for i in range(entries)]
    started = time.perf_counter()
    for entry in raw:
        replica.apply(entry)
    return entries / (time.perf_counter() - started)


def measure_members(members: int) -> float:
    replica = Replica("here", new_relay(1000, 65536, 250, False, False))
    gc.collect()
    before = rss_kib()
    for i in range(members):
        replica.apply(Replica.entry("there", i, i * 2 + 1, 1, NICK, f"user{i}", f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
                                    "10.0.0.1:4242"))
        replica.apply(Replica.entry("there", i, i * 2 + 2, 1, JOIN, f"#room{i % 1000}", None))
    gc.collect()
    return (rss_kib() - before) / members


def measure_redis(entries: int) -> tuple[float, float]:
    from twisted.internet import defer, reactor, task

    from chatsvc.redislink import _APPEND, APPEND_BATCH, LOG, SEQ, _connect, parse_url

    port = 6390 + os.getpid() % 500
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL)
    result = {}

    async def run():
        redis = _connect(parse_url(f"redis://127.0.0.1:{port}"))
        for _ in range(100):
            try:
                await redis.execute_command("PING").addTimeout(0.2, reactor)
                break
            except Exception:
                await task.deferLater(reactor, 0.05, lambda: None)
        before = int((await redis.execute_command("INFO", "memory")).split("used_memory:")[1].split()[0])
        entry = Replica.entry("r", 1, 1, 1, MSG, "#room", "x" * 200, "c1")
        started = time.perf_counter()
        batches = [redis.eval(_APPEND, [LOG, SEQ], [entry] * APPEND_BATCH) for _ in range(entries // APPEND_BATCH)]
        await defer.gatherResults(batches)
        result["rate"] = entries / (time.perf_counter() - started)
        after = int((await redis.execute_command("INFO", "memory")).split("used_memory:")[1].split()[0])
        result["bytes"] = (after - before) / entries
        await redis.disconnect()

    def stop(_):
        reactor.stop()

    defer.ensureDeferred(run()).addBoth(stop)
    reactor.run()
    proc.kill()
    return result["rate"], result["bytes"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--entries", type=int, default=200_000)
    args = parser.parse_args()
    resource.setrlimit(resource.RLIMIT_NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE))
    apply_rate = measure_apply(args.entries)
    per_member = measure_members(args.members)
    redis_rate, redis_bytes = measure_redis(args.entries)
    print(f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, CPython {sys.version.split()[0]}\n")
    print("| measure | value |\n|---|---|")
    print(f"| replica applies room messages (no local member) | {apply_rate:,.0f} entries/s |")
    print(f"| relay memory per member on another relay | {per_member:.2f} KiB |")
    print(f"| redis-server appends (batches of 500) | {redis_rate:,.0f} entries/s |")
    print(f"| redis-server memory per 200-byte entry | {redis_bytes:.0f} bytes |")


if __name__ == "__main__":
    main()
