"""Hostile and careless clients against a real process: stalled heads and bodies, idle
connections, oversized heads and bodies, too many connections."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.reliability.conftest import ROW, slow_env
from tests.reliability.httpclient import Connection, Lost, predict_request

pytestmark = pytest.mark.slow

HEADER_TIMEOUT = 1.0
STALLED = 60
LIMITS = {"HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT), "KEEP_ALIVE_SECONDS": "1",
          "MAX_HEAD_BYTES": "8192", "MAX_BODY_BYTES": "10000"}


async def closed_after(conn: Connection, limit: float) -> tuple[float, bytes]:
    """Seconds until the server closes ``conn``, and what it wrote before."""
    start = time.monotonic()
    try:
        data = await asyncio.wait_for(conn.reader.read(), limit)
    finally:
        conn.close()
    return time.monotonic() - start, data


async def _stalled_and_served(port: int) -> tuple[list[tuple[float, bytes]], list[float]]:
    half = [await Connection.open(port) for _ in range(STALLED)]
    for i, conn in enumerate(half):
        if i % 2 == 0:  # half a head; the other half never send a byte
            await conn.send(b"POST /predict HTTP/1.1\r\nhost: 127.0.0.1\r\nx-slow: ")
    waits = [asyncio.ensure_future(closed_after(c, HEADER_TIMEOUT + 2)) for c in half]
    served: list[float] = []
    client = await Connection.open(port)
    deadline = time.monotonic() + HEADER_TIMEOUT + 0.5
    while time.monotonic() < deadline:  # bounded: about 30 requests
        reply = await client.request(predict_request(ROW), timeout=5)
        assert reply.status == 200
        served.append(reply.seconds)
        await asyncio.sleep(0.05)
    client.close()
    return await asyncio.gather(*waits), served


def test_stalled_clients_are_closed_within_the_header_timeout_while_others_are_served(
        server_factory: Callable[..., Any]) -> None:
    server = server_factory(slow_env(0.0, 8, **LIMITS))
    closed, served = asyncio.run(_stalled_and_served(server.port))
    assert max(seconds for seconds, _ in closed) < HEADER_TIMEOUT + 0.5
    partial = [data for i, (_, data) in enumerate(closed) if i % 2 == 0]
    silent = [data for i, (_, data) in enumerate(closed) if i % 2 == 1]
    assert all(d.startswith(b"HTTP/1.1 408 ") and d.endswith(
        b'{"detail":"request head not complete within 1 s (HEADER_TIMEOUT_SECONDS)"}')
        for d in partial), partial[:1]
    assert silent == [b""] * (STALLED // 2)  # nothing was asked: closed without an answer
    assert len(served) >= 10 and max(served) < 0.5


async def _stalled_body_and_idle(port: int) -> tuple[tuple[float, bytes], tuple[float, bytes]]:
    body = await Connection.open(port)
    await body.send(b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{\"in")
    idle = await Connection.open(port)
    assert (await idle.request(predict_request(ROW))).status == 200
    return await asyncio.gather(closed_after(body, HEADER_TIMEOUT + 2), closed_after(idle, 3))


def test_a_stalled_body_gets_408_and_an_idle_keep_alive_connection_is_closed(
        server_factory: Callable[..., Any]) -> None:
    server = server_factory(slow_env(0.0, 8, **LIMITS))
    (body_s, body), (idle_s, idle) = asyncio.run(_stalled_body_and_idle(server.port))
    assert body.startswith(b"HTTP/1.1 408 ") and body.endswith(
        b'{"detail":"request body stalled for 1 s (HEADER_TIMEOUT_SECONDS)"}'), body
    assert HEADER_TIMEOUT - 0.1 < body_s < HEADER_TIMEOUT + 0.5
    assert (idle, 0.9 < idle_s < 1.5) == (b"", True)  # KEEP_ALIVE_SECONDS=1, uvicorn's own


async def _oversized(port: int) -> list[tuple[int, bytes]]:
    answers = []
    for raw in (
        predict_request(ROW, {"x-big": "a" * 200_000}),  # 200 KB: refused while it arrives
        predict_request(ROW, {"x-big": "a" * 9_000}),  # one read: refused once complete
        b"POST /predict HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 20_000,  # never ends
        predict_request(b'{"inputs": [[' + b"1," * 6000 + b"1]]}"),  # 12 KB body
    ):
        conn = await Connection.open(port)
        try:
            reply = await conn.request(raw, timeout=5)
        except (Lost, ConnectionError) as exc:
            answers.append((0, repr(exc).encode()))
        else:
            answers.append((reply.status, reply.body))
        conn.close()
    return answers


def test_an_oversized_head_is_431_and_an_oversized_body_413(
        server_factory: Callable[..., Any]) -> None:
    server = server_factory(slow_env(0.0, 8, **LIMITS))
    assert asyncio.run(_oversized(server.port)) == [
        (431, b'{"detail":"request head is over the limit of 8192 bytes (MAX_HEAD_BYTES)"}'),
        (431, (b'{"detail":"request head is 9086 bytes, over the limit of 8192 bytes '
              b'(MAX_HEAD_BYTES)"}')),
        (431, b'{"detail":"request head is over the limit of 8192 bytes (MAX_HEAD_BYTES)"}'),
        (413, (b'{"detail":"body is 12017 bytes, over the limit of 10000 bytes '
              b'(MAX_BODY_BYTES)"}')),
    ]


async def _connections(port: int, cap: int) -> tuple[list[int], int, int]:
    conns = []
    statuses = []
    for _ in range(cap + 1):  # one after the other: each asks while the earlier stay open
        conns.append(await Connection.open(port))
        statuses.append((await conns[-1].request(predict_request(ROW))).status)
    conns[0].close()
    await asyncio.sleep(0.2)
    again = await Connection.open(port)
    after = (await again.request(predict_request(ROW))).status
    for c in conns[1:] + [again]:
        c.close()
    return statuses, after, len(conns)


def test_connections_over_the_cap_get_503(server_factory: Callable[..., Any]) -> None:
    server = server_factory(slow_env(0.0, 8, MAX_CONNECTIONS="4", KEEP_ALIVE_SECONDS="0.3"))
    time.sleep(0.6)  # the readiness probes' keep-alive connections are closed by now
    statuses, after, _ = asyncio.run(_connections(server.port, 4))
    assert statuses == [200, 200, 200, 200, 503]  # uvicorn's limit_concurrency
    assert after == 200  # room again once one closed
