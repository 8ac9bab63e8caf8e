"""A soak: many requests over keep-alive connections, with overload, deadlines and bad bodies
mixed in; the server's resident memory stays within a bound."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.reliability.conftest import ROW, rss_bytes, sample, slow_env
from tests.reliability.httpclient import Connection, predict_request

pytestmark = pytest.mark.slow

CONNECTIONS = 8
PER_CONNECTION = 1500  # 12,000 requests in all
GROWTH_BOUND = 8 << 20  # bytes of RSS growth allowed after the warm-up
MIX = [predict_request(ROW), predict_request(ROW, {"X-Request-Timeout": "0.000001"}),
       predict_request(b'{"inputs": [[1]]}'), predict_request(b"{not json")]


async def soak(port: int, count: int) -> dict[int, int]:
    statuses: dict[int, int] = {}

    async def one_connection() -> None:
        conn = await Connection.open(port)
        for i in range(count):
            reply = await conn.request(MIX[i % len(MIX)], timeout=10)
            statuses[reply.status] = statuses.get(reply.status, 0) + 1
            if conn.closed:
                conn = await Connection.open(port)
        conn.close()

    await asyncio.wait_for(asyncio.gather(*(one_connection() for _ in range(CONNECTIONS))), 120)
    return statuses


def test_a_soak_keeps_resident_memory_within_a_bound(server_factory: Callable[..., Any]) -> None:
    server = server_factory(slow_env(0.0, 8, MAX_QUEUE_ROWS="4", MAX_REQUEST_ROWS="4"))
    asyncio.run(soak(server.port, 200))  # warm-up: caches, pools and allocator arenas fill
    before = rss_bytes(server.proc.pid)
    start = time.monotonic()
    statuses = asyncio.run(soak(server.port, PER_CONNECTION))
    seconds = time.monotonic() - start
    growth = rss_bytes(server.proc.pid) - before
    assert sum(statuses.values()) == CONNECTIONS * PER_CONNECTION
    assert {200, 400, 422} <= set(statuses) <= {200, 400, 422, 503, 504}, statuses  # no 500
    # real inference ran through it all; how much of the valid quarter of the mix the 4-row
    # queue sheds is up to scheduling (seen: 4.5 % to over 10 % of all requests served)
    assert statuses[200] >= CONNECTIONS * PER_CONNECTION // 100, statuses
    assert growth < GROWTH_BOUND, (growth, before, seconds)
    assert sample(server, "predictor_in_flight_requests") == 1  # the scrape itself
