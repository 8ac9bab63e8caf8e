#!/usr/bin/env python3
"""Overload benchmark: offered load vs goodput and p99, ours against LitServe, same run.

    .venv/bin/python benchmarks/serving/overload.py [--levels 0.5,1,1.5,2,3] [--duration 5]
        [--forward-ms 20] [--batch 8] [--contenders ours,litserve] [--json out.json]

Both servers serve the same slow echo model (each forward pass sleeps --forward-ms for a batch
of at most --batch rows: capacity = batch / forward, 400 req/s by default), so only serving
differs. Requests arrive open loop (at fixed times, whatever the answers do) at each multiple of
that capacity for --duration seconds, single-row ``POST /predict`` over keep-alive connections;
latency counts from the intended send time. Reported per level, per second from the first send
to the last answer: answered 200s, and goodput (the 200s within --slo); p50/p99 of the 200s, the
share shed (503, with Retry-After for ours) and how fast a shed answer came (p99), and errors
(timeouts after 30 s, broken connections).
The server runs on CPU 0 and the load on CPU 1 where there are two CPUs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench import ROOT, litserve_missing, litserve_python, setup_litserve
from procs import free_port, stop_session, wait_ready

BODY = b'{"inputs": [[1.0, 2.0]]}'
MAX_CONNECTIONS = 2000  # the load's own cap: past it, a request waits for a connection


@dataclass
class Level:
    contender: str
    multiple: float
    offered_per_s: float
    answered_per_s: float = 0.0
    goodput_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    shed_pct: float = 0.0
    shed_p99_ms: float = 0.0  # how fast a shed request (503) is answered
    errors: int = 0
    note: str = ""


def log(message: str) -> None:
    print(f"overload: {message}", file=sys.stderr, flush=True)


def command(contender: str, port: int, forward_s: float, batch: int
            ) -> tuple[list[str], dict[str, str], str] | str:
    env = {"SLOW_SECONDS": str(forward_s), "MAX_BATCH_ROWS": str(batch),
           "PYTHONUNBUFFERED": "1"}
    if contender == "ours":
        env |= {"PREDICTOR": "tests.service.slow_predictor:SlowEcho", "LOG_LEVEL": "warning",
                "DEVICE": "cpu", "REPLICAS_PER_DEVICE": "1"}  # one worker, as LitServe's
        return ([sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port)],
                env, "/readyz")
    if contender == "litserve":
        missing = litserve_missing()
        if missing is not None:
            return missing
        return [str(litserve_python()), str(HERE / "litserve_slow_app.py"), str(port)], env, \
            "/health"
    return f"unknown contender {contender!r}"


async def _request(pool: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
                   slots: asyncio.Semaphore, port: int, raw: bytes, timeout: float) -> int:
    """The status of one request; 0 for a timeout or a broken connection."""
    async with slots:
        conn = pool.pop() if pool else await asyncio.open_connection("127.0.0.1", port)
        reader, writer = conn
        try:
            writer.write(raw)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
            length, close = 0, False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
                elif name.lower() == b"connection" and b"close" in value.lower():
                    close = True
            await asyncio.wait_for(reader.readexactly(length), timeout)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            writer.close()
            return 0
        if close:
            writer.close()
        else:
            pool.append(conn)
        return int(head[9:12])


async def open_loop(port: int, rate: float, seconds: float, timeout: float
                    ) -> tuple[list[tuple[int, float]], float]:
    pool: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    slots = asyncio.Semaphore(MAX_CONNECTIONS)
    raw = (b"POST /predict HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
           b"content-length: %d\r\n\r\n" % len(BODY)) + BODY
    results: list[tuple[int, float]] = []
    start = time.monotonic()

    async def one(due: float) -> None:
        status = await _request(pool, slots, port, raw, timeout)
        results.append((status, time.monotonic() - due))

    tasks = []
    for i in range(int(rate * seconds)):
        due = start + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(due)))
    await asyncio.gather(*tasks)
    wall = time.monotonic() - start
    for _, writer in pool:
        writer.close()
    return results, wall


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(contender: str, levels: list[float], seconds: float, forward_s: float, batch: int,
            slo: float, pin: bool, logs: Path) -> list[Level]:
    capacity = batch / forward_s
    port = free_port()
    spec = command(contender, port, forward_s, batch)
    if isinstance(spec, str):
        log(f"{contender}: skipped: {spec}")
        return [Level(contender, m, m * capacity, note=f"skipped: {spec}") for m in levels]
    argv, env, ready = spec
    if pin:
        argv = ["taskset", "-c", "0", *argv]
        os.sched_setaffinity(0, {1})  # the load generator: this process, on CPU 1
    log_path = logs / f"{contender}.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **env}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    rows = []
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}{ready}")
        asyncio.run(open_loop(port, capacity / 2, 1.0, 30))  # warm-up
        for multiple in levels:
            rate = multiple * capacity
            log(f"{contender}: {multiple:g}x capacity = {rate:.0f} req/s for {seconds:g}s")
            results, wall = asyncio.run(open_loop(port, rate, seconds, 30))
            ok = [s for status, s in results if status == 200]
            shed = sum(1 for status, _ in results if status == 503)
            errors = sum(1 for status, _ in results if status not in (200, 503))
            shed_s = [s for status, s in results if status == 503]
            rows.append(Level(
                contender, multiple, len(results) / seconds, len(ok) / wall,
                sum(1 for s in ok if s <= slo) / wall, 1000 * percentile(ok, 0.5),
                1000 * percentile(ok, 0.99), 100 * shed / max(1, len(results)),
                1000 * percentile(shed_s, 0.99), errors))
            time.sleep(1.0)  # the queue is empty again: every request was answered
    except RuntimeError as exc:
        tail = log_path.read_text(errors="replace")[-2000:]
        log(f"{contender}: failed: {exc}\n{tail}")
        rows += [Level(contender, m, m * capacity, note=f"failed: {exc}")
                 for m in levels[len(rows):]]
    finally:
        stop_session(proc)  # our own child's session, by its PID
    return rows


def table(rows: list[Level], slo: float) -> str:
    lines = [(f"| contender | load | offered req/s | answered 200/s | goodput (≤ {slo:g} s) /s "
              "| p50 ms | p99 ms | shed 503 | shed p99 ms | errors |"),
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r.multiple, r.contender != "ours")):
        lines.append(f"| {r.contender} | {r.multiple:g}× | {r.offered_per_s:.0f} | "
                     f"{r.answered_per_s:.0f} | {r.goodput_per_s:.0f} | {r.p50_ms:.0f} | "
                     f"{r.p99_ms:.0f} | {r.shed_pct:.0f}% | {r.shed_p99_ms:.0f} | {r.errors} |"
                     + (f" {r.note}" if r.note else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="0.5,1,1.5,2,3", help="multiples of capacity")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per level")
    parser.add_argument("--forward-ms", type=float, default=20.0)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--slo", type=float, default=2.0,
                        help="seconds a good answer takes at most (ours: MAX_QUEUE_SECONDS=1)")
    parser.add_argument("--contenders", default="ours,litserve")
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if "litserve" in args.contenders.split(","):
        setup_litserve()
    pin = not args.no_pin and len(os.sched_getaffinity(0)) >= 2 and bool(shutil.which("taskset"))
    levels = [float(m) for m in args.levels.split(",")]
    forward = args.forward_ms / 1000
    rows: list[Level] = []
    with tempfile.TemporaryDirectory(prefix="overload-") as tmp:
        for contender in args.contenders.split(","):
            rows += measure(contender, levels, args.duration, forward, args.batch, args.slo,
                            pin, Path(tmp))
    print(f"slow echo model: {args.forward_ms:g} ms per forward pass, batches of "
          f"{args.batch}: capacity {args.batch / forward:.0f} req/s; {args.duration:g} s per "
          f"level, open loop; {'server on CPU 0, load on CPU 1' if pin else 'unpinned'}")
    print(table(rows, args.slo))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
