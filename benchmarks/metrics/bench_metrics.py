"""/metrics latency and the cost of the metrics on the request path.

    .venv/bin/python benchmarks/metrics/bench_metrics.py            # in-process + a live server
    .venv/bin/python benchmarks/metrics/bench_metrics.py --url http://127.0.0.1:8000  # existing

In-process: ``render()`` with the NVML collector over a fake of two GPUs (no driver needed) and
without it, and the ASGI wrapper's overhead per request. Live: ``GET /metrics`` from one client
(a bounded loop), idle and while ``wrk`` loads ``POST /predict`` (when wrk is installed).
Prints one JSON object; numbers are milliseconds (``_ms``) or microseconds (``_us``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import requests
from prometheus_client import CollectorRegistry

from service._metrics import ServiceMetrics
from tests.fakenvml import FakeGpu, FakeNvml, loader


def percentiles(samples: list[float], scale: float, unit: str) -> dict[str, float]:
    ordered = sorted(samples)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * scale

    return {f"p50_{unit}": round(pick(0.50), 3), f"p99_{unit}": round(pick(0.99), 3),
            "n": len(ordered)}


def timed(fn: Callable[[], Any], count: int) -> list[float]:
    out = []
    for _ in range(count):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def in_process(count: int) -> dict[str, Any]:
    gpus = [FakeGpu(uuid=f"GPU-{i}", processes=[(os.getpid(), 1 << 30)]) for i in range(2)]
    with_gpu = ServiceMetrics(CollectorRegistry(), loader(FakeNvml(gpus)))
    without = ServiceMetrics(CollectorRegistry(), None)
    for m in (with_gpu, without):
        m.set_model_info(model="digits", device="cpu")
        for endpoint in ("/predict", "/readyz", "/metrics", "other"):
            m._record(endpoint, 200, 0.001)
        m.observe_batch(4, [0.001] * 4, 0.002, 0, "cpu")
    result = {
        "render_2_fake_gpus": percentiles(timed(with_gpu.render, count), 1e3, "ms"),
        "render_no_nvml": percentiles(timed(without.render, count), 1e3, "ms"),
        "body_bytes_2_fake_gpus": len(with_gpu.render()[0]),
    }

    async def bare(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def noop_send(message: Any) -> None:
        return None

    async def per_request(app: Any, n: int) -> float:
        scope = {"type": "http", "path": "/predict", "method": "POST"}
        start = time.perf_counter()
        for _ in range(n):
            await app(scope, None, noop_send)
        return (time.perf_counter() - start) / n

    n = count * 20
    plain = asyncio.run(per_request(bare, n))
    wrapped = asyncio.run(per_request(without.asgi(bare), n))
    result["asgi_wrapper_overhead_us"] = round((wrapped - plain) * 1e6, 2)
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(log: Path) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "DEVICE": os.environ.get("DEVICE", "auto")})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if requests.get(url + "/readyz", timeout=1).status_code == 200:
                return url, proc
        except requests.RequestException:
            pass
        time.sleep(0.2)
    stop(proc)
    raise SystemExit(f"server did not get ready:\n{log.read_text(errors='replace')[-2000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def scrape_latency(url: str, count: int) -> dict[str, float]:
    with requests.Session() as session:
        session.get(url + "/metrics", timeout=10)  # warm the connection and the collector
        return percentiles(timed(lambda: session.get(url + "/metrics", timeout=10), count),
                           1e3, "ms")


def live(url: str, count: int, load_seconds: int, tmp: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"metrics_idle": scrape_latency(url, count)}
    wrk = shutil.which("wrk")
    if wrk is None:
        result["metrics_under_load"] = "skipped: wrk not installed"
        return result
    script = tmp / "predict.lua"
    script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                      f'wrk.body = {json.dumps(json.dumps({"inputs": [[1.0] * 64]}))}\n')
    load = subprocess.Popen([wrk, "-t1", "-c8", f"-d{load_seconds}s", "-s", str(script),
                             url + "/predict"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        time.sleep(1)
        result["metrics_under_load"] = scrape_latency(url, count)
    finally:
        out, _ = load.communicate(timeout=load_seconds + 30)
    rps = [line.split()[1] for line in out.decode().splitlines() if line.startswith("Requests/sec")]
    result["predict_load_rps"] = float(rps[0]) if rps else None
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an already running service (default: start one)")
    parser.add_argument("--count", type=int, default=300, help="scrapes per measurement")
    parser.add_argument("--load-seconds", type=int, default=10)
    parser.add_argument("--no-live", action="store_true", help="in-process numbers only")
    args = parser.parse_args()
    report: dict[str, Any] = {"host_cpus": os.cpu_count(), "in_process": in_process(args.count)}
    if not args.no_live:
        with tempfile.TemporaryDirectory() as tmp:
            proc = None
            url = args.url
            if url is None:
                url, proc = start_server(Path(tmp) / "server.log")
            try:
                report["live"] = live(url, args.count, args.load_seconds, Path(tmp))
            finally:
                if proc is not None:
                    stop(proc)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
