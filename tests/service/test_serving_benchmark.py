"""A short smoke of benchmarks/serving: it runs and prints its table (speed is never asserted)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def test_serving_benchmark_runs_every_contender_and_prints_the_table_and_v2_ratios() -> None:
    proc = subprocess.run(
        [sys.executable, "benchmarks/serving/bench.py", "--duration", "1", "--warmup", "0",
         "--connections", "4", "--contenders", "ours,v2-json,v2-binary,naive,litserve",
         "--no-setup"],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[1].split() == ["contender", "conns", "req/s", "p50", "ms", "p99", "ms", "errors",
                                "ours/peer", "cpu", "us/req", "note"]
    table = [line for line in lines[2:] if " / predict at " not in line
             and not line.endswith("together")]
    together = {line.split()[0] for line in lines[2:] if line.endswith("together")}
    assert together == {"ours", "v2-json", "v2-binary"}, lines
    rows = {(line.split()[0], line.split()[1]): line.split() for line in table}
    contenders = ("ours", "v2-json", "v2-binary", "naive", "litserve")
    assert set(rows) == {(c, n) for c in contenders for n in ("4", "1")}
    for key in [(c, n) for c in ("ours", "v2-json", "v2-binary", "naive") for n in ("4", "1")]:
        assert float(rows[key][2]) > 0 and rows[key][5] == "0", lines  # served, no errors
    assert rows[("naive", "4")][6].endswith("x")  # our ratio to the peer
    ratios = [line for line in lines if " / predict at " in line]
    assert [line.split(": ")[0] for line in ratios] == [
        "v2-json / predict at 4 connection(s)", "v2-binary / predict at 4 connection(s)",
        "v2-json / predict at 1 connection(s)", "v2-binary / predict at 1 connection(s)",
        "v2-json / predict at 1 connection(s), together",
        "v2-binary / predict at 1 connection(s), together"]
    assert all(line.endswith("x") for line in ratios), ratios
    litserve = rows[("litserve", "4")]
    assert float(litserve[2]) > 0 or "skipped:" in litserve, lines


def test_overload_benchmark_runs_and_prints_the_table() -> None:
    proc = subprocess.run(
        [sys.executable, "benchmarks/serving/overload.py", "--levels", "2", "--duration", "1",
         "--contenders", "ours"], check=False, cwd=ROOT, capture_output=True, text=True,
        timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[1].startswith("| contender | load | offered req/s | answered 200/s |")
    cells = [c.strip() for c in lines[3].strip("|").split("|")]
    assert cells[:3] == ["ours", "2×", "800"], lines
    assert float(cells[3]) > 0 and cells[-1] == "0", lines  # served, and no errors
