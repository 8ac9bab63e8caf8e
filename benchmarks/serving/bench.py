#!/usr/bin/env python3
"""Serving benchmark: our service vs peers on the same model, same wrk settings, same run.

    .venv/bin/python benchmarks/serving/bench.py [--model digits|wide|PATH] [--duration 10]
        [--connections 32] [--contenders ours,naive,litserve] [--json out.json]

Each contender is started alone (pinned to CPU 0 with taskset when there are two CPUs; wrk runs on
CPU 1), warmed up, then driven by wrk with single-row ``POST /predict`` bodies. Prints req/s,
p50, p99, errors, our throughput ratio to each peer and the server's CPU time per request; the
1-connection rows are one sequential client.

``v2-json`` and ``v2-binary`` are our service again, driven with the Open Inference Protocol's
single-row ``POST /v2/models/digits/infer`` (JSON tensors; or binary tensors in and out, as
tritonclient.http sends by default); their ratio to ``ours`` (``/predict``) is printed after the
table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from procs import free_port, stop_session, wait_ready

CACHE = ROOT / ".cache" / "bench"
DIGIT_ROW = [0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0, 0, 3, 15, 2, 0, 11, 8, 0, 0, 4,
             12, 0, 0, 8, 8, 0, 0, 5, 8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0, 0, 2, 14, 5, 10,
             12, 0, 0, 0, 0, 6, 13, 10, 0, 0, 0]  # load_digits().data[0], a zero
RESULT = re.compile(r"RESULT (.*)")
V2 = ("v2-json", "v2-binary")  # our service again, driven with v2 infer requests


def v2_bodies(folder: Path) -> dict[str, tuple[Path, int]]:
    """The single-row v2 infer bodies and their JSON header's length (0: all JSON)."""
    tensor = {"name": "input", "shape": [1, len(DIGIT_ROW)], "datatype": "FP32"}
    as_json = json.dumps({"inputs": [{**tensor, "data": DIGIT_ROW}]}).encode()
    head = json.dumps({"inputs": [{**tensor, "parameters": {
        "binary_data_size": 4 * len(DIGIT_ROW)}}], "parameters": {"binary_data_output": True}})
    binary = head.encode() + struct.pack(f"<{len(DIGIT_ROW)}f", *DIGIT_ROW)
    bodies = {}
    for name, body, header in (("v2-json", as_json, 0), ("v2-binary", binary, len(head))):
        path = folder / f"{name}.body"
        path.write_bytes(body)
        bodies[name] = (path, header)
    return bodies


@dataclass
class Row:
    contender: str
    connections: int
    requests_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    errors: int = 0
    cpu_us_per_req: float = 0.0  # server CPU time (all its processes) per answered request
    note: str = ""


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)



def model_file(name: str) -> Path:
    if name == "digits":
        return ROOT / "service" / "models" / "digits.pt"
    if name == "wide":
        path = CACHE / "wide-mlp.pt"
        if not path.exists():
            CACHE.mkdir(parents=True, exist_ok=True)
            subprocess.run([sys.executable, str(HERE / "models.py"), "wide", str(path)], check=True)
        return path
    return Path(name).resolve()


def litserve_python() -> Path:
    return ROOT / ".cache" / "litserve-venv" / "bin" / "python"


def setup_litserve() -> None:
    """Make LitServe's own venv on first use (benchmarks/serving/setup-litserve)."""
    subprocess.run([str(HERE / "setup-litserve")], check=False, stdout=subprocess.DEVNULL)


def litserve_missing() -> str | None:
    """Why LitServe cannot run (its row's note), None when it can."""
    lit = litserve_python()
    if lit.exists():
        return None
    return f"no LitServe venv at {lit.parent.parent} (run benchmarks/serving/setup-litserve)"


Spec = tuple[list[str], dict[str, str], str] | str  # argv, env, readiness path; or why not


def command(contender: str, model: Path, port: int) -> Spec:
    """argv, env and readiness path of a contender, or why it cannot run here."""
    env = {"MODEL_PATH": str(model), "PYTHONUNBUFFERED": "1", "TORCH_THREADS": "1"}
    py = sys.executable
    if contender == "ours":
        return [py, "-m", "service", "--host", "127.0.0.1", "--port", str(port)], env, "/readyz"
    if contender == "naive":
        return [py, "-m", "uvicorn", "--app-dir", str(HERE), "naive_app:app", "--host",
                "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning"], env, "/readyz"
    if contender == "noop":
        return [py, "-m", "uvicorn", "--app-dir", str(HERE), "noop_app:app", "--host",
                "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning",
                "--http", "httptools", "--loop", "uvloop", "--lifespan", "off"], env, "/readyz"
    if contender == "litserve":
        missing = litserve_missing()
        if missing is not None:
            return missing
        return [str(litserve_python()), str(HERE / "litserve_app.py"), str(port)], env, "/health"
    return f"unknown contender {contender!r}"



def session_cpu_seconds(sid: int) -> float:
    """utime + stime of every process in session ``sid`` (the contender and its workers)."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # fields after "(comm)": state ppid pgrp session ...
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def run_wrk(url: str, connections: int, seconds: float, body_file: Path,
            cpu: str | None, script: str = "report.lua", header_length: int = 0) -> dict[str, int]:
    if shutil.which("wrk") is None:  # the Python load generator: slower, same numbers reported
        argv = [sys.executable, str(HERE / "loadgen.py"), url, str(body_file), "--connections",
                str(connections), "--seconds", str(seconds), "--header-length",
                str(header_length)]
        if cpu is not None:
            argv = ["taskset", "-c", cpu, *argv]
        done = subprocess.run(argv, check=True, capture_output=True, text=True,
                              timeout=seconds + 60)
        r = json.loads(done.stdout)
        return {"requests": r["requests"], "duration_us": round(1e6 * r["requests"]
                                                                / max(r["requests_per_s"], 1e-9)),
                "non2xx": r["errors"], "connect": 0, "read": 0, "write": 0, "timeout": 0,
                "p50_us": round(r["p50_ms"] * 1000), "p99_us": round(r["p99_ms"] * 1000)}
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
            "-s", str(HERE / script), url]
    if cpu is not None:
        argv = ["taskset", "-c", cpu, *argv]
    env = {**os.environ, "WRK_BODY_FILE": str(body_file), "WRK_SCRIPT_DIR": str(HERE),
           "WRK_HEADER_LENGTH": str(header_length)}
    out = subprocess.run(argv, check=True, capture_output=True, text=True, env=env,
                         timeout=seconds + 60).stdout
    match = RESULT.search(out)
    if match is None:
        raise RuntimeError(f"wrk printed no RESULT line:\n{out}")
    return {k: int(v) for k, v in (kv.split("=") for kv in match.group(1).split())}


def wrk_errors(r: dict[str, int]) -> int:
    """Every failed request of one ``run_wrk``: non-2xx answers and socket errors."""
    return r["non2xx"] + r["connect"] + r["read"] + r["write"] + r["timeout"]


@dataclass
class Shape:
    """A request shape: the row label, the path, the body and the wrk script that sends it."""

    name: str
    path: str
    body: Path
    script: str = "report.lua"
    header_length: int = 0


def launch(argv: list[str], env: dict[str, str], pin: bool, log_path: Path
           ) -> subprocess.Popen[bytes]:
    """A contender's server in its own session (stopped by its PID), pinned to CPU 0 with
    ``pin``, its output to ``log_path``."""
    if pin:
        argv = ["taskset", "-c", "0", *argv]
    with log_path.open("wb") as out:
        return subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **env}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def measure(contender: str, model: Path, connections: list[int], seconds: float, warmup: float,
            shapes: list[Shape], pin: bool, logs: Path, rounds: int = 1) -> list[Row]:
    """Start ``contender`` once; for each connection count, drive it with each request shape in
    turn, ``rounds`` slices of ``seconds / rounds`` each, interleaved, so the shapes of one
    server share the box's conditions (req/s: all slices; p50: their median; p99: their max).
    With several shapes, a last run drives them all at once, the connections split between them
    (note ``together``): the same seconds on the same server, whatever else the box does."""
    port = free_port()
    spec = command(contender, model, port)
    if isinstance(spec, str):
        log(f"{contender}: skipped: {spec}")
        return [Row(s.name, c, note=f"skipped: {spec}") for c in connections for s in shapes]
    argv, env, ready_path = spec
    log_path = logs / f"{contender}.log"
    proc = launch(argv, env, pin, log_path)
    rows: list[Row] = []
    wrk_cpu = "1" if pin else None
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, base + ready_path)
        for shape in shapes if warmup > 0 else []:
            run_wrk(base + shape.path, max(connections), warmup, shape.body, wrk_cpu,
                    shape.script, shape.header_length)
        for c in connections:
            slices: dict[str, list[tuple[dict[str, int], float]]] = {s.name: [] for s in shapes}
            for _ in range(rounds):
                for shape in shapes:
                    log(f"{shape.name}: {c} connection(s), {seconds / rounds:g}s")
                    cpu = session_cpu_seconds(proc.pid)
                    r = run_wrk(base + shape.path, c, seconds / rounds, shape.body, wrk_cpu,
                                shape.script, shape.header_length)
                    slices[shape.name].append((r, session_cpu_seconds(proc.pid) - cpu))
            rows += [slices_row(name, c, runs) for name, runs in slices.items()]
        if len(shapes) > 1:
            rows += _together(base, shapes, max(connections), seconds, wrk_cpu, proc.pid)
    except (RuntimeError, subprocess.SubprocessError) as exc:
        tail = log_path.read_text(errors="replace")[-2000:]
        log(f"{contender}: failed: {exc}\n{tail}")
        done = {(r.contender, r.connections) for r in rows}
        rows += [Row(s.name, c, note=f"failed: {exc}") for c in connections for s in shapes
                 if (s.name, c) not in done]
    finally:
        stop_session(proc)  # our own child's session, by its PID
    return rows


def slices_row(name: str, connections: int, runs: list[tuple[dict[str, int], float]]) -> Row:
    """One row from slices of ``run_wrk`` results and the server's CPU seconds in each:
    req/s over all of them, p50 their median, p99 their max."""
    requests = sum(r["requests"] for r, _ in runs)
    return Row(name, connections, requests / (sum(r["duration_us"] for r, _ in runs) / 1e6),
               statistics.median(r["p50_us"] for r, _ in runs) / 1000,
               max(r["p99_us"] for r, _ in runs) / 1000, sum(wrk_errors(r) for r, _ in runs),
               sum(cpu for _, cpu in runs) * 1e6 / max(1, requests))


def _together(base: str, shapes: list[Shape], connections: int, seconds: float,
              wrk_cpu: str | None, pid: int) -> list[Row]:
    """All shapes at once, one wrk each with an equal share of the connections; the server's
    CPU per request is over all of them."""
    share = max(1, connections // len(shapes))
    log(f"{', '.join(s.name for s in shapes)} together: {share} connection(s) each, "
        f"{seconds:g}s")
    cpu = session_cpu_seconds(pid)
    with ThreadPoolExecutor(len(shapes)) as pool:
        results = list(pool.map(lambda s: run_wrk(base + s.path, share, seconds, s.body, wrk_cpu,
                                                  s.script, s.header_length), shapes))
    cpu = session_cpu_seconds(pid) - cpu
    total = sum(r["requests"] for r in results)
    return [Row(s.name, share, r["requests"] / (r["duration_us"] / 1e6), r["p50_us"] / 1000,
                r["p99_us"] / 1000, wrk_errors(r), cpu * 1e6 / max(1, total), "together")
            for s, r in zip(shapes, results)]


def table(rows: list[Row]) -> str:
    ours = {(r.connections, r.note): r for r in rows if r.contender == "ours"}
    header = (f"{'contender':<12} {'conns':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
              f"{'errors':>6} {'ours/peer':>9} {'cpu us/req':>10}  note")
    lines = [header]
    for r in sorted(rows, key=lambda r: -r.connections):
        ratio = ""
        mine = ours.get((r.connections, r.note))
        if mine and r.contender != "ours" and r.requests_per_s and mine.requests_per_s:
            ratio = f"{mine.requests_per_s / r.requests_per_s:.2f}x"
        lines.append(f"{r.contender:<12} {r.connections:>5} {r.requests_per_s:>9.0f} "
                     f"{r.p50_ms:>8.2f} {r.p99_ms:>8.2f} {r.errors:>6} {ratio:>9} "
                     f"{r.cpu_us_per_req:>10.0f}  {r.note}")
    return "\n".join(lines)


def v2_ratios(rows: list[Row]) -> str:
    """The v2 request shapes' req/s over /predict's, per connection count."""
    ours = {(r.connections, r.note): r for r in rows
            if r.contender == "ours" and r.requests_per_s}
    lines = []
    for r in rows:
        mine = ours.get((r.connections, r.note))
        if r.contender in V2 and mine and r.requests_per_s:
            how = ", together" if r.note == "together" else ""
            lines.append(f"{r.contender} / predict at {r.connections} connection(s){how}: "
                         f"{r.requests_per_s / mine.requests_per_s:.2f}x")
    return "\n".join(lines)


def load_parser(description: str, model: str) -> argparse.ArgumentParser:
    """The flags this benchmark and replicas.py share: the model, the load, what to write."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", default=model,
                        help=f"digits, wide, or a TorchScript path ({model})")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before each")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--no-single", action="store_true", help="skip the 1-connection runs")
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = load_parser(__doc__.splitlines()[0], "digits")
    parser.add_argument("--contenders", default="ours,v2-json,v2-binary,naive,litserve,noop",
                        help="noop: a model-less ASGI app on the same uvicorn stack (the "
                             "ceiling); v2-json, v2-binary: ours over the Open Inference Protocol")
    parser.add_argument("--rounds", type=int, default=1,
                        help="split each measurement into this many interleaved slices (with "
                             "v2-json/v2-binary: less drift between the shapes on a busy box)")
    parser.add_argument("--no-pin", action="store_true", help="do not taskset server/wrk")
    parser.add_argument("--no-setup", action="store_true",
                        help="do not create LitServe's venv when it is missing (skip it instead)")
    args = parser.parse_args(argv)
    generator = "wrk" if shutil.which("wrk") else "loadgen.py (no wrk: apt-get install wrk)"
    pin = not args.no_pin and len(os.sched_getaffinity(0)) >= 2 and shutil.which("taskset")
    model = model_file(args.model)
    if "litserve" in args.contenders.split(",") and not args.no_setup:
        setup_litserve()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        body = Path(tmp) / "body.json"
        body.write_text(json.dumps({"inputs": [DIGIT_ROW]}))
        v2_path = f"/v2/models/{model.stem}/infer"
        # JSON bodies need only report.lua; binary ones their own headers (v2_binary.lua)
        shapes = {name: Shape(name, v2_path, file, "v2_binary.lua" if header else "report.lua",
                              header)
                  for name, (file, header) in v2_bodies(Path(tmp)).items()}
        chosen = args.contenders.split(",")
        v2 = [shapes[c] for c in chosen if c in V2]
        if v2 and "ours" not in chosen:
            chosen.insert(0, "ours")
        conns = [args.connections] if args.no_single else [args.connections, 1]
        for contender in chosen:
            if contender in V2:
                continue  # measured on our server, between its /predict runs
            own = [Shape("ours" if contender == "ours" else contender, "/predict", body)]
            if contender == "ours":
                own += v2
            rows += measure(contender, model, conns, args.duration, args.warmup, own,
                            bool(pin), Path(tmp), args.rounds)
    print(f"model {model.name}, {args.connections} connections, {args.duration:g}s each, "
          f"single-row POST /predict, load by {generator}, "
          f"{'server on CPU 0, load on CPU 1' if pin else 'unpinned'}")
    print(table(rows))
    ratios = v2_ratios(rows)
    if ratios:
        print(ratios)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
