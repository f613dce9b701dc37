"""
Benchmark the chatsvc relay against the original thread-per-client design.

    python benchmarks/run.py                      # every workload, both servers
    python benchmarks/run.py --workloads fanout   # just one
    python benchmarks/run.py --server-python pypy3

Starts each server as a subprocess on loopback (chatsvc as the real
``twistd -n chat``, with its flood limit off: the senders are meant to go
flat out), drives it from ``--workers`` load-generator processes
(``loadgen.py``) and prints a Markdown table.  Run by hand; the numbers go
into the README with the date and the machine.

Workloads:
- fanout: 1000 clients in one room, 4 send 200 messages of 100 bytes each,
  as fast as they can -- throughput;
- chatty: 100 clients, 10 send 200 messages at 50 messages/s each --
  latency under a normal load;
- crowd: 10,000 clients join one room, then one message goes to all --
  join time and server memory per connection.

Linked relays (``--targets chatsvc,linked1,linked2,linked2-spread``): the
same workloads against relays linked through a redis-server started for
the run -- one linked relay (the price of the shared log), two relays
sharing one port (SO_REUSEPORT: the kernel spreads the generators'
connections), and two relays on ports of their own with the generators'
connections dealt round-robin.  Server CPU and RSS then add up every relay
and Redis.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


@dataclass(frozen=True)
class Workload:
    name: str
    clients: int
    senders: int
    messages: int
    size: int
    rate: float = 0.0  # messages/s per sender; 0 = as fast as possible


WORKLOADS = {
    "fanout": Workload("fanout", 1000, 4, 200, 100),
    "chatty": Workload("chatty", 100, 10, 200, 100, rate=50),
    "crowd": Workload("crowd", 10_000, 1, 1, 100),
}
# Tiny versions for the smoke test (tests/test_benchmarks.py).
SMOKE = {
    "fanout": Workload("fanout", 12, 3, 20, 100),
    "chatty": Workload("chatty", 6, 2, 10, 100, rate=200),
    "crowd": Workload("crowd", 30, 1, 1, 100),
}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Server:
    """A server under test in a subprocess; knows its port once started."""

    def __init__(
        self, target: str, python: str, logdir: Path, twistd_args: list[str] = (), port: int = 0,
        extra: list[str] = (), label: str = "",
    ) -> None:
        self.target = target
        self.log_path = logdir / f"{target}{label}-server.log"
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        if target == "chatsvc":
            cmd = [
                python, "-c", "from twisted.scripts.twistd import run; run()",
                "-n", "--pidfile=", *twistd_args, "chat", "--port", f"tcp:{port}:interface=127.0.0.1", *extra,
                # the documented switches for benchmarks: no flood limit
                # (senders go flat out) and no connection caps (all
                # clients come from 127.0.0.1, 10,000 of them)
                "--flood-burst", "0", "--flood-rate", "0", "--max-clients", "0", "--max-per-ip", "0",
            ]
            pattern = re.compile(r"chatsvc relay listening on .*\(127\.0\.0\.1 port (\d+)\)")
        elif target == "bare":
            cmd = [python, str(HERE / "bare_relay.py"), "0"]
            pattern = re.compile(r"listening on (\d+)")
        else:
            cmd = [python, str(HERE / "baseline_relay.py"), "0"]
            pattern = re.compile(r"listening on (\d+)")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=logdir)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            match = pattern.search(self.log_path.read_text())
            if match:
                self.port = int(match.group(1))
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{target} server did not start:\n{self.log_path.read_text()[-2000:]}")

    def rss_kib(self) -> int:
        return rss_kib(self.proc.pid)

    def wait_for_threads(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("Threads:") and int(line.split()[1]) >= count:
                    time.sleep(0.2)  # each thread registers itself first thing
                    return
            time.sleep(0.05)

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class RedisProcess:
    """A redis-server for linked relays, on a free port, nothing saved."""

    def __init__(self, logdir: Path) -> None:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(logdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def rss_kib(self) -> int:
        return rss_kib(self.proc.pid)

    def cpu_s(self) -> float:
        return Server.cpu_s(self)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


class Deployment:
    """What one target runs: one server, or linked relays and their Redis."""

    def __init__(self, target: str, python: str, logdir: Path, twistd_args: list[str]) -> None:
        self.parts: list = []
        if not target.startswith("linked"):
            server = Server(target, python, logdir, twistd_args)
            self.parts, self.ports = [server], [server.port]
            return
        try:
            redis = RedisProcess(logdir)
            self.parts.append(redis)
            link = ["--redis", f"redis://127.0.0.1:{redis.port}"]
            count = int(target[len("linked")])
            shared = not target.endswith("-spread") and count > 1
            if shared:
                link.append("--reuse-port")
            first = Server("chatsvc", python, logdir, twistd_args, extra=link, label=f"-{target}-1")
            self.parts.append(first)
            for i in range(2, count + 1):
                port = first.port if shared else 0
                self.parts.append(Server("chatsvc", python, logdir, twistd_args, port, link, f"-{target}-{i}"))
            relays = [p for p in self.parts if isinstance(p, Server)]
            self.ports = [first.port] if shared else [r.port for r in relays]
        except BaseException:
            self.stop()
            raise

    def rss_kib(self) -> int:
        return sum(p.rss_kib() for p in self.parts)

    def cpu_s(self) -> float:
        return sum(p.cpu_s() for p in self.parts)

    def wait_for_threads(self, count: int) -> None:
        self.parts[0].wait_for_threads(count)

    def stop(self) -> None:
        for part in reversed(self.parts):
            part.stop()


def run_workload(
    target: str, w: Workload, workers: int, python: str, logdir: Path, twistd_args: list[str] = ()
) -> dict:
    server = Deployment(target, python, logdir, twistd_args)
    try:
        idle_rss = server.rss_kib()
        indices = list(range(w.clients))
        senders = indices[: w.senders]
        step = max(1, (w.clients - w.senders) // 50)
        samplers = set(senders) | set(indices[w.senders :: step])
        gens = []
        workers = min(workers, w.clients)
        for k in range(workers):
            mine = indices[k::workers]
            spec = {
                "mode": "chatsvc" if target.startswith("linked") else target,
                "host": "127.0.0.1",
                "ports": server.ports,
                "clients": mine,
                "senders": [i for i in senders if i in set(mine)],
                "total_senders": w.senders,
                "samplers": [i for i in mine if i in samplers],
                "messages": w.messages,
                "size": w.size,
                "rate": w.rate,
                "settle": 3.0,
                "timeout": 120,
            }
            gens.append(
                subprocess.Popen(
                    [sys.executable, str(HERE / "loadgen.py"), json.dumps(spec)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                )
            )
        started = time.monotonic()
        ready = [json.loads(g.stdout.readline() or '{"event": "error", "error": "no output"}') for g in gens]
        join_s = time.monotonic() - started
        errors = [r["error"] for r in ready if r["event"] != "ready"]
        if errors:
            for g in gens:
                g.kill()
            return {"target": target, "workload": w.name, "error": errors[0]}
        if target == "baseline":
            # The original has no join reply: a client is "in" once the
            # server's thread for it runs. Wait for all of them, or the
            # first messages would miss late clients and count as lost.
            server.wait_for_threads(w.clients + 1)
        loaded_rss = server.rss_kib()
        cpu_before = server.cpu_s()
        for g in gens:
            g.stdin.write("go\n")
            g.stdin.flush()
        results = [json.loads(g.stdout.readline()) for g in gens]
        for g in gens:
            g.wait(30)
        server_cpu = server.cpu_s() - cpu_before
    finally:
        server.stop()

    go = min(r["go_ns"] for r in results)
    last = max(r["last_ns"] for r in results)
    elapsed = max((last - go) / 1e9, 1e-9)
    valid = sum(r["valid"] for r in results)
    expected = sum(r["expected"] for r in results)
    latencies = sorted(x for r in results for x in r["latencies_ms"])

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else float("nan")

    return {
        "target": target,
        "workload": w.name,
        "clients": w.clients,
        "join_s": join_s,
        "deliveries": valid,
        "expected": expected,
        "lost": max(0, expected - valid),
        "garbled": sum(r["invalid"] for r in results),
        "out_of_order": sum(r["out_of_order"] for r in results),
        "elapsed_s": elapsed,
        "deliveries_per_s": valid / elapsed,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": latencies[-1] if latencies else float("nan"),
        "rss_per_conn_kib": (loaded_rss - idle_rss) / w.clients,
        "server_cpu_s": server_cpu,
        "generator_cpu_s": sum(r["cpu_s"] for r in results),
        "generator_max_cpu_share": max(r["cpu_s"] for r in results) / max(elapsed + join_s, 1e-9),
    }


def table(rows: list[dict]) -> str:
    head = (
        "| workload | server | clients | connect+join | deliveries/s | p50 | p99 | max "
        "| messages lost | garbled lines | RSS/conn | server CPU | busiest generator |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['workload']} | {r['target']} | | failed: {r['error'][:80]} | | | | | | | | | |")
            continue
        lines.append(
            f"| {r['workload']} | {r['target']} | {r['clients']:,} | {r['join_s']:.2f} s "
            f"| {r['deliveries_per_s']:,.0f} | {r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms | {r['max_ms']:.1f} ms "
            f"| {r['lost']:,} of {r['expected']:,} | {r['garbled']:,} | {r['rss_per_conn_kib']:.1f} KiB "
            f"| {r['server_cpu_s']:.1f} s | {100 * r['generator_max_cpu_share']:.0f}% CPU |"
        )
    return "\n".join(lines)


def compare(rows: list[dict]) -> str:
    """chatsvc against the bare Twisted relay measured in the same run."""
    by = {(r["workload"], r["target"]): r for r in rows if "error" not in r}
    out = []
    for (workload, target), row in by.items():
        alone = by.get((workload, "chatsvc"))
        if target.startswith("linked") and alone is not None and alone["deliveries_per_s"]:
            out.append(
                f"{workload}: {target} / one relay alone = "
                f"{row['deliveries_per_s'] / alone['deliveries_per_s']:.2f}x deliveries/s, "
                f"connect+join {row['join_s']:.2f} s vs {alone['join_s']:.2f} s"
            )
        bare = by.get((workload, "bare"))
        if target == "chatsvc" and bare is not None and bare["deliveries_per_s"]:
            out.append(
                f"{workload}: chatsvc / bare = {row['deliveries_per_s'] / bare['deliveries_per_s']:.2f}x "
                f"deliveries/s, connect+join {row['join_s']:.2f} s vs {bare['join_s']:.2f} s"
            )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", default="fanout,chatty,crowd")
    parser.add_argument(
        "--targets", default="chatsvc,bare,baseline",
        help="chatsvc; bare (a bare Twisted line relay: the floor); baseline (the original threaded design); "
        "linked1, linked2 (sharing one port), linked2-spread (a port each): relays linked through Redis",
    )
    parser.add_argument("--workers", type=int, default=2, help="load-generator processes")
    parser.add_argument("--server-python", default=sys.executable, help="interpreter for the servers (e.g. pypy3)")
    parser.add_argument("--smoke", action="store_true", help="tiny workloads, to check the harness itself")
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--logdir", default=None, help="where server logs go (default: a temp dir)")
    parser.add_argument(
        "--twistd-arg", action="append", default=[],
        help="extra twistd option for the chatsvc server, e.g. --twistd-arg=--profile=prof.out "
        "--twistd-arg=--profiler=cprofile --twistd-arg=--savestats",
    )
    args = parser.parse_args(argv)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the servers
    logdir = Path(args.logdir) if args.logdir else Path(os.environ.get("TMPDIR", "/tmp")) / "chatsvc-bench"
    logdir.mkdir(parents=True, exist_ok=True)
    catalogue = SMOKE if args.smoke else WORKLOADS
    rows = []
    for name in args.workloads.split(","):
        for target in args.targets.split(","):
            row = run_workload(target, catalogue[name], args.workers, args.server_python, logdir, args.twistd_arg)
            rows.append(row)
            print(f"# {name} / {target}: done", file=sys.stderr, flush=True)
    print(
        f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores, "
        f"server: {Path(args.server_python).name} {platform.python_version() if args.server_python == sys.executable else ''}"
        f", {args.workers} generator processes\n"
    )
    print(table(rows))
    ratios = compare(rows)
    if ratios:
        print("\n" + ratios)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
