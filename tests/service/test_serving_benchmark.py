"""A short smoke of benchmarks/serving: it runs and prints its table (speed is never asserted)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def test_serving_benchmark_runs_every_contender_and_prints_the_table() -> None:
    proc = subprocess.run(
        [sys.executable, "benchmarks/serving/bench.py", "--duration", "1", "--warmup", "0",
         "--connections", "4", "--contenders", "ours,naive,litserve", "--no-setup"],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[1].split() == ["contender", "conns", "req/s", "p50", "ms", "p99", "ms", "errors",
                                "ours/peer", "cpu", "us/req", "note"]
    rows = {(line.split()[0], line.split()[1]): line.split() for line in lines[2:]}
    assert set(rows) == {(c, n) for c in ("ours", "naive", "litserve") for n in ("4", "1")}
    for key in [("ours", "4"), ("ours", "1"), ("naive", "4"), ("naive", "1")]:
        assert float(rows[key][2]) > 0 and rows[key][5] == "0", lines  # served, no errors
    assert rows[("naive", "4")][6].endswith("x")  # our ratio to the peer
    litserve = rows[("litserve", "4")]
    assert float(litserve[2]) > 0 or "skipped:" in litserve, lines
