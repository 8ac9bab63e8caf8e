#!/usr/bin/env python3
"""Replicas on the CPU: 1 replica x 2 threads against 2 replicas x 1 thread, same run.

    .venv/bin/python benchmarks/serving/replicas.py [--model wide|digits|PATH] [--duration 10]
        [--connections 32] [--rounds 2] [--cpus 0,1] [--json out.json]

Each server is ``python -m service`` pinned to the same CPUs (taskset), ``REPLICAS_PER_DEVICE=1``:
``DEVICE=cpu`` gives one replica with a thread per CPU, ``DEVICE=cpu,cpu`` two replicas sharing
them (one thread each on two CPUs; what ``REPLICAS_PER_DEVICE=auto`` does there). The configurations alternate, A B B A per round, so drift on a shared box falls on
both; each is driven by wrk with single-row ``POST /predict`` at ``--connections`` and at 1.
Prints req/s, p50, p99 and the server's CPU time per request for every run, and the medians.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench import (
    DIGIT_ROW,
    ROOT,
    load_parser,
    log,
    model_file,
    run_wrk,
    session_cpu_seconds,
    wrk_errors,
)
from procs import free_port, stop_session, wait_ready

CONFIGS = {"1 replica x 2 threads": "cpu", "2 replicas x 1 thread": "cpu,cpu"}


@dataclass
class Run:
    config: str
    round: int
    connections: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us_per_req: float
    replicas: str  # what /readyz said: device and state of each


def measure(config: str, device: str, model: Path, cpus: str, connections: list[int],
            seconds: float, warmup: float, body: Path, logs: Path, round_: int) -> list[Run]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "DEVICE": device, "REPLICAS_PER_DEVICE": "1", "MODEL_PATH": str(model),
           "LOG_LEVEL": "warning", "PYTHONUNBUFFERED": "1"}
    argv = ["taskset", "-c", cpus, sys.executable, "-m", "service", "--host", "127.0.0.1",
            "--port", str(port)]
    log_path = logs / f"{device}-{round_}.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    runs = []
    try:
        wait_ready(proc, url + "/readyz")
        with urllib.request.urlopen(url + "/readyz", timeout=5) as reply:
            replicas = ", ".join(f"{r['device']} {r['state']}"
                                 for r in json.loads(reply.read())["replicas"])
        run_wrk(url + "/predict", max(connections), warmup, body, None)
        for c in connections:
            log(f"{config} (round {round_}): {c} connection(s), {seconds:g}s")
            cpu = session_cpu_seconds(proc.pid)
            r = run_wrk(url + "/predict", c, seconds, body, None)
            cpu = session_cpu_seconds(proc.pid) - cpu
            runs.append(Run(config, round_, c, r["requests"] / (r["duration_us"] / 1e6),
                            r["p50_us"] / 1000, r["p99_us"] / 1000, wrk_errors(r),
                            cpu * 1e6 / max(1, r["requests"]), replicas))
    except (RuntimeError, subprocess.SubprocessError) as exc:
        raise SystemExit(f"{config}: {exc}\n{log_path.read_text(errors='replace')[-2000:]}")
    finally:
        stop_session(proc)  # our own child's session, by its PID
    return runs


def table(runs: list[Run]) -> str:
    lines = [(f"{'config':<24} {'round':>5} {'conns':>5} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
             f"{'errors':>6} {'cpu us/req':>10}")]
    for r in sorted(runs, key=lambda r: (-r.connections, r.config, r.round)):
        lines.append(f"{r.config:<24} {r.round:>5} {r.connections:>5} {r.requests_per_s:>8.0f} "
                     f"{r.p50_ms:>8.2f} {r.p99_ms:>8.2f} {r.errors:>6} {r.cpu_us_per_req:>10.0f}")
    lines += ["", (f"{'medians':<24} {'':>5} {'conns':>5} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
                  f"{'ratio':>6}")]
    base = next(iter(CONFIGS))
    for c in sorted({r.connections for r in runs}, reverse=True):
        rate = {}
        for config in CONFIGS:
            mine = [r for r in runs if r.config == config and r.connections == c]
            rate[config] = statistics.median(r.requests_per_s for r in mine)
            ratio = rate[config] / rate[base] if rate[base] else 0.0
            lines.append(f"{config:<24} {'':>5} {c:>5} {rate[config]:>8.0f} "
                         f"{statistics.median(r.p50_ms for r in mine):>8.2f} "
                         f"{statistics.median(r.p99_ms for r in mine):>8.2f} {ratio:>5.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = load_parser(__doc__.splitlines()[0], "wide")
    parser.add_argument("--rounds", type=int, default=2, help="A B B A rounds")
    parser.add_argument("--cpus", default="0,1", help="the CPUs both servers are pinned to")
    args = parser.parse_args(argv)
    if shutil.which("taskset") is None:
        raise SystemExit("replicas.py: needs taskset (util-linux) to pin both servers")
    model = model_file(args.model)
    conns = [args.connections] if args.no_single else [args.connections, 1]
    order = list(CONFIGS.items())
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="bench-replicas-") as tmp:
        body = Path(tmp) / "body.json"
        body.write_text(json.dumps({"inputs": [DIGIT_ROW]}))
        for round_ in range(1, args.rounds + 1):
            for config, device in order + order[::-1]:
                runs += measure(config, device, model, args.cpus, conns, args.duration,
                                args.warmup, body, Path(tmp), round_)
    print(f"model {model.name}, servers pinned to CPUs {args.cpus}, single-row POST /predict "
          f"by wrk (unpinned), {args.duration:g}s each, {args.rounds} A-B-B-A round(s)")
    print(table(runs))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in runs], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
