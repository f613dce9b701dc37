"""The benchmark harness itself: tiny workloads, checking that it counts right.

No timing is asserted here -- timings on shared machines are noise; the
real numbers come from running benchmarks/run.py by hand.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support import REPO, subprocess_env


def smoke(tmp_path, targets: str, workloads: str) -> tuple[dict, str]:
    out = tmp_path / "results.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--smoke", "--targets", targets,
         "--workloads", workloads, "--json", str(out), "--logdir", str(tmp_path)],
        env=subprocess_env(), capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return {(row["target"], row["workload"]): row for row in json.loads(out.read_text())}, result.stdout


def test_smoke_run_counts_every_delivery(tmp_path):
    rows, table = smoke(tmp_path, "chatsvc", "fanout,chatty,crowd")
    # fanout: 12 clients, 3 senders x 20 messages: receivers get 3 x 20,
    # senders 2 x 20 each.
    assert rows["chatsvc", "fanout"]["expected"] == 9 * 60 + 3 * 40
    assert rows["chatsvc", "chatty"]["expected"] == 4 * 20 + 2 * 10
    assert rows["chatsvc", "crowd"]["expected"] == 29
    for row in rows.values():
        assert row["deliveries"] == row["expected"]
        assert row["lost"] == 0 and row["garbled"] == 0 and row["out_of_order"] == 0
        assert row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]
    assert "| fanout | chatsvc | 12 |" in table


def test_smoke_run_against_linked_relays(tmp_path):
    import shutil

    import pytest

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    rows, table = smoke(tmp_path, "linked2,linked2-spread", "fanout")
    for target in ("linked2", "linked2-spread"):
        row = rows[target, "fanout"]
        assert row["expected"] == 9 * 60 + 3 * 40
        assert row["deliveries"] == row["expected"] and row["out_of_order"] == 0 and row["garbled"] == 0


def test_baseline_relay_runs(tmp_path):
    rows, _ = smoke(tmp_path, "baseline", "fanout")
    row = rows["baseline", "fanout"]
    assert row["expected"] == 9 * 60 + 3 * 40
    # It really relayed (it may garble some lines by design, but a baseline
    # that delivers nothing would make every comparison meaningless).
    assert row["deliveries"] > row["expected"] // 2


class _Gen:
    """Just enough of loadgen.Generator for one Client."""

    def __init__(self, mode):
        self.mode = mode
        self.size = 40
        self.room = b"#bench"
        self.latencies = []
        self.all_done = None
        self.spec = {"senders": [], "total_senders": 2, "messages": 2, "samplers": [0]}


def test_loadgen_counts_intact_garbled_and_reordered_lines():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import loadgen
    finally:
        sys.path.pop(0)
    import asyncio

    async def scenario():
        gen = _Gen("baseline")
        client = loadgen.Client(gen, 0)
        client.registered.set_result(None)
        good = [loadgen.payload(5, n, 40) for n in range(3)]
        # two intact lines, one spliced out of two halves, one out of order
        data = good[1] + b"\n" + good[0][:20] + good[2][25:] + b"\n" + good[0] + b"\n"
        client.data_received(data[:17])  # lines may arrive in pieces
        client.data_received(data[17:])
        return client

    client = asyncio.run(scenario())
    assert (client.valid, client.invalid, client.out_of_order) == (2, 1, 1)
    assert client.expected == 4
