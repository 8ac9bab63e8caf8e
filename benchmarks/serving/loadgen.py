#!/usr/bin/env python3
"""A small closed-loop HTTP/1.1 load generator for hosts without wrk (stdlib + optional uvloop).

    loadgen.py URL BODY_FILE --connections 32 --seconds 5 [--procs 2] [--header-length N]
        -> one JSON line

Each connection sends the body as ``POST`` over keep-alive, waits for the whole answer, repeats.
Several processes split the connections (one Python process tops out near 15k req/s).
``--header-length N`` sends the body as an Open Inference Protocol binary request: a JSON header
of N bytes, then binary tensor data (``Inference-Header-Content-Length: N``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import sys
import time
from urllib.parse import urlsplit


async def _connection(host: str, port: int, requests: list[bytes], first: int, deadline: float,
                      latencies: list[float], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    sent = first
    try:
        while time.monotonic() < deadline:
            start = time.perf_counter()
            writer.write(requests[sent % len(requests)])
            sent += 1
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            if head[9:12] != b"200":
                errors[0] += 1
    except (OSError, asyncio.IncompleteReadError):
        errors[1] += 1
    finally:
        writer.close()


def _run(url: str, body: bytes | list[bytes], connections: int, seconds: float,
         header_length: int = 0) -> tuple[list[float], list[int]]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    kind = "application/octet-stream" if header_length else "application/json"
    extra = f"Inference-Header-Content-Length: {header_length}\r\n" if header_length else ""
    requests = [(f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}"
                 f"Content-Type: {kind}\r\nContent-Length: {len(b)}\r\n\r\n").encode() + b
                for b in ([body] if isinstance(body, bytes) else body)]
    latencies: list[float] = []
    errors = [0, 0]  # non-200 answers, broken connections

    async def main() -> None:
        deadline = time.monotonic() + seconds
        # each connection starts at its own place in the bodies, then takes them in turn
        step = max(1, len(requests) // connections)
        await asyncio.gather(*(_connection(host, port, requests, i * step, deadline, latencies,
                                           errors) for i in range(connections)))

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
    return latencies, errors


def _worker(args: tuple[str, bytes | list[bytes], int, float, int]
            ) -> tuple[list[float], list[int]]:
    return _run(*args)


def load(url: str, body: bytes | list[bytes], connections: int, seconds: float, procs: int = 1,
         header_length: int = 0) -> dict[str, float]:
    """Drive ``url`` with ``body`` (or each of a list of bodies in turn); req/s, p50/p99 (ms)
    and errors over all connections."""
    procs = max(1, min(procs, connections))
    shares = [connections // procs + (i < connections % procs) for i in range(procs)]
    started = time.perf_counter()
    if procs == 1:
        results = [_run(url, body, connections, seconds, header_length)]
    else:
        with multiprocessing.get_context("spawn").Pool(procs) as pool:
            results = pool.map(_worker, [(url, body, n, seconds, header_length) for n in shares])
    elapsed = time.perf_counter() - started
    latencies = sorted(x for lat, _ in results for x in lat)
    n = len(latencies)

    def pct(p: float) -> float:
        return latencies[min(n - 1, int(p / 100 * n))] * 1000 if n else 0.0

    return {"requests": n, "requests_per_s": n / min(elapsed, seconds + 0.5) if n else 0.0,
            "p50_ms": pct(50), "p99_ms": pct(99),
            "errors": sum(e[0] + e[1] for _, e in results)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("body_file")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--procs", type=int, default=1)
    parser.add_argument("--header-length", type=int, default=0,
                        help="the JSON header's length of a v2 binary-tensor body")
    args = parser.parse_args()
    with open(args.body_file, "rb") as f:
        body = f.read()
    print(json.dumps(load(args.url, body, args.connections, args.seconds, args.procs,
                          args.header_length)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
