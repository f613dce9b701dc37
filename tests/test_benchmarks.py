"""The benchmark harness itself: tiny workloads, checking that it counts right.

No timing is asserted here -- timings on shared machines are noise; the
real numbers come from running benchmarks/run.py by hand.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support import REPO, subprocess_env


def test_smoke_run_counts_every_delivery(tmp_path):
    out = tmp_path / "results.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--smoke", "--targets", "chatsvc",
         "--workloads", "fanout,chatty,crowd", "--json", str(out), "--logdir", str(tmp_path)],
        env=subprocess_env(), capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {row["workload"]: row for row in json.loads(out.read_text())}
    # fanout: 12 clients, 3 senders x 20 messages: receivers get 3 x 20,
    # senders 2 x 20 each.
    assert rows["fanout"]["expected"] == 9 * 60 + 3 * 40
    assert rows["chatty"]["expected"] == 4 * 20 + 2 * 10
    assert rows["crowd"]["expected"] == 29
    for row in rows.values():
        assert row["deliveries"] == row["expected"]
        assert row["lost"] == 0 and row["garbled"] == 0 and row["out_of_order"] == 0
        assert row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]
    assert "| fanout | chatsvc | 12 |" in result.stdout


def test_baseline_relay_runs_and_its_losses_are_counted(tmp_path):
    out = tmp_path / "results.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--smoke", "--targets", "baseline",
         "--workloads", "fanout", "--json", str(out), "--logdir", str(tmp_path)],
        env=subprocess_env(), capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    [row] = json.loads(out.read_text())
    assert row["expected"] == 9 * 60 + 3 * 40
    # whatever it delivered intact plus what it lost is what was expected
    assert row["deliveries"] + row["lost"] == row["expected"] or row["deliveries"] > row["expected"]
