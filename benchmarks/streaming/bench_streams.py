#!/usr/bin/env python3
"""Streaming benchmark: time to first chunk and chunks/s with 1, 8 and 32 concurrent streams,
our service against LitServe's streaming, the same model (examples/generate's byte-level GPT-2,
greedy, 64 tokens a stream) in the same run.

    .venv/bin/python benchmarks/streaming/bench_streams.py [--streams 1,8,32] [--rounds 2]
        [--tokens 64] [--json out.json]

Each server is started alone, pinned to CPU 0 with taskset when there are two CPUs (this load
generator runs on CPU 1), one replica / one worker, one torch thread, warmed up; then for each
concurrency C, C clients each open ``--rounds`` streams one after the other
(``POST /predict``, ``{"prompt": ..., "max_tokens": N}``; ours with ``Accept:
text/event-stream``, counting ``data:`` events; LitServe's JSON lines). Reported per C: the
median and p90 time to first chunk over every stream, and the chunks per second of all streams
together (chunks over the wall time of the round of C streams).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks" / "serving"))
from procs import free_port, stop_session, wait_ready

PROMPT = "Once upon a time"
LOGS = ROOT / ".cache" / "bench-streams"


@dataclass
class Row:
    server: str
    streams: int
    ttfc_p50_ms: float
    ttfc_p90_ms: float
    chunks_per_s: float
    chunks: int
    errors: int


def pinned(cmd: list[str]) -> list[str]:
    taskset = shutil.which("taskset")
    return [taskset, "-c", "0", *cmd] if taskset and (os.cpu_count() or 1) >= 2 else cmd


def start(server: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    if server == "ours":
        env.update(PREDICTOR="predict:Generator", PYTHONPATH=str(ROOT / "examples" / "generate"),
                   DEVICE="cpu", REPLICAS_PER_DEVICE="1", MAX_STREAMS="64", LOG_LEVEL="warning")
        cmd = [sys.executable, "-m", "service", "--port", str(port)]
        ready = f"http://127.0.0.1:{port}/readyz"
    else:
        python = subprocess.run([str(ROOT / "benchmarks/serving/setup-litserve")], check=True,
                                capture_output=True, text=True).stdout.strip()
        cmd = [str(ROOT / python), str(ROOT / "benchmarks/streaming/litserve_stream_app.py"),
               str(port)]
        ready = f"http://127.0.0.1:{port}/health"
    LOGS.mkdir(parents=True, exist_ok=True)
    log = (LOGS / f"{server}.log").open("wb")  # why it failed, if it does
    proc = subprocess.Popen(pinned(cmd), cwd=ROOT, env=env, start_new_session=True,
                            stdout=log, stderr=subprocess.STDOUT)
    wait_ready(proc, ready, timeout=180)
    return proc


async def one_stream(server: str, port: int, tokens: int) -> tuple[float, int]:
    """(seconds to the first chunk, chunks) of one stream, over a raw HTTP/1.1 connection."""
    body = json.dumps({"prompt": PROMPT, "max_tokens": tokens}).encode()
    accept = b"Accept: text/event-stream\r\n" if server == "ours" else b""
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Connection: close\r\n" + accept + b"Content-Length: %d\r\n\r\n%s"
                 % (len(body), body))
    first, chunks, done = 0.0, 0, False
    head = await reader.readuntil(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n", 1)[0]:
        raise RuntimeError(head.decode(errors="replace"))
    while not done:
        line = await reader.readline()
        if not line:
            break
        # chunked transfer: size lines and blank lines carry no event
        event = (line.startswith(b"data: ") and not line.startswith(b"data: [DONE]")
                 if server == "ours" else line.startswith(b"{"))
        done = line.startswith(b"data: [DONE]")
        if event:
            chunks += 1
            if chunks == 1:
                first = time.perf_counter() - start
    writer.close()
    return first, chunks


async def load(server: str, port: int, streams: int, rounds: int, tokens: int) -> Row:
    firsts: list[float] = []
    total, errors, wall = 0, 0, 0.0
    for _ in range(rounds):
        t0 = time.perf_counter()
        results = await asyncio.gather(*(one_stream(server, port, tokens)
                                         for _ in range(streams)), return_exceptions=True)
        wall += time.perf_counter() - t0
        for result in results:
            if isinstance(result, BaseException):
                errors += 1
            else:
                firsts.append(result[0])
                total += result[1]
    cuts = statistics.quantiles(firsts, n=10) if len(firsts) > 1 else firsts * 9
    return Row(server, streams, statistics.median(firsts) * 1000, cuts[8] * 1000,
               total / wall, total, errors)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", default="1,8,32")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--servers", default="ours,litserve")
    parser.add_argument("--json")
    args = parser.parse_args()
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {1})
    rows: list[Row] = []
    for server in args.servers.split(","):
        port = free_port()
        proc = start(server, port)
        try:
            asyncio.run(load(server, port, 1, 2, args.tokens))  # warm-up
            for streams in map(int, args.streams.split(",")):
                row = asyncio.run(load(server, port, streams, args.rounds, args.tokens))
                rows.append(row)
                print(f"{row.server:9} {row.streams:3} streams: TTFC p50 {row.ttfc_p50_ms:8.1f} "
                      f"ms  p90 {row.ttfc_p90_ms:8.1f} ms  {row.chunks_per_s:7.1f} chunks/s  "
                      f"({row.chunks} chunks, {row.errors} errors)", flush=True)
        finally:
            stop_session(proc)
    ours = {r.streams: r for r in rows if r.server == "ours"}
    for peer in (r for r in rows if r.server != "ours"):
        o = ours.get(peer.streams)
        if o is not None:
            print(f"ours / {peer.server} at {peer.streams:2}: TTFC p50 "
                  f"{peer.ttfc_p50_ms / o.ttfc_p50_ms:6.2f}x faster, chunks/s "
                  f"{o.chunks_per_s / peer.chunks_per_s:5.2f}x")
    print("load:", os.getloadavg())
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
