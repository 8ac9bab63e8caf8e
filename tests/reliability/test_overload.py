"""Overload against a real process: open-loop arrivals above the slow predictor's capacity are
shed at once with Retry-After while the accepted ones keep their latency bound; deadlines and
disconnected clients leave the queue before the forward pass."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import requests

from tests.reliability.conftest import ROW, p99, sample, slow_env
from tests.reliability.httpclient import Connection, Reply, predict_request

pytestmark = pytest.mark.slow

FORWARD_S = 0.1
BATCH_ROWS = 4
CAPACITY = BATCH_ROWS / FORWARD_S  # 40 one-row requests per second
QUEUE_S = 0.5
OFFERED = 2.5 * CAPACITY  # requests per second, open loop
SECONDS = 3.0


async def open_loop(port: int, rate: float, seconds: float) -> list[tuple[float, Reply]]:
    """Requests at fixed times (not when the last one returned), each on an idle keep-alive
    connection or a new one. Each result: seconds from the intended send time to the answer
    (what a user waits, client lag included), and the reply (seconds from its write)."""
    idle: list[Connection] = []
    results: list[tuple[float, Reply]] = []
    start = time.monotonic()

    async def one(due: float) -> None:
        conn = idle.pop() if idle else await Connection.open(port)
        reply = await conn.request(predict_request(ROW))
        results.append((time.monotonic() - due, reply))
        if not conn.closed:
            idle.append(conn)

    tasks = []
    for i in range(int(rate * seconds)):
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        tasks.append(asyncio.ensure_future(one(due)))
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    for conn in idle:
        conn.close()
    return results


def test_overload_sheds_the_excess_at_once_and_keeps_the_accepted_within_the_queue_bound(
        server_factory: Callable[..., Any]) -> None:
    server = server_factory(slow_env(FORWARD_S, BATCH_ROWS, MAX_QUEUE_SECONDS=str(QUEUE_S),
                                     MAX_WAIT_MS="0"))
    results = asyncio.run(open_loop(server.port, OFFERED, SECONDS))
    accepted = [waited for waited, r in results if r.status == 200]
    shed = [r for _, r in results if r.status == 503]
    assert len(accepted) + len(shed) == len(results) == int(OFFERED * SECONDS)
    # goodput holds at about capacity: the queue never ran dry, nor did it grow
    assert len(accepted) >= 0.7 * CAPACITY * SECONDS, len(accepted)
    assert len(shed) >= 0.3 * len(results), len(shed)
    bound = QUEUE_S + FORWARD_S
    assert p99(accepted) <= bound + 0.3, (p99(accepted), bound)
    assert p99([r.seconds for r in shed]) < 0.05  # from the request's write to its 503
    assert all(int(r.headers["retry-after"]) >= 1 for r in shed)
    assert {r.body[:25] for r in shed} == {b'{"detail":"queue is full:'}
    rejected = sum(sample(server, "predictor_rejected_requests_total", {"reason": reason})
                   for reason in ("queue_rows", "queue_wait"))
    assert rejected == len(shed)
    # and the service is healthy afterwards
    assert requests.get(server.url + "/readyz", timeout=5).status_code == 200
    reply = requests.post(server.url + "/predict", data=ROW, timeout=5)
    assert (reply.status_code, reply.json()) == (200, {"predictions": [1.0]})


V2_INFER = "/v2/models/SlowEcho/infer"


def v2_row(*row: float) -> bytes:
    return orjson.dumps({"inputs": [{"name": "input", "shape": [1, len(row)],
                                     "datatype": "FP32", "data": list(row)}]})


# endpoint: (path, a row's body, the 504's body). The late request's own deadline is its
# X-Request-Timeout header, under a REQUEST_TIMEOUT_SECONDS default far above it.
ENDPOINTS = {
    "predict": ("/predict", lambda *row: orjson.dumps({"inputs": [list(row)]}),
                b'{"detail":"the request waited its deadline of 0.1 s in the queue"}'),
    "v2": (V2_INFER, v2_row,
           b'{"error":"the request waited its deadline of 0.1 s in the queue"}'),
}


async def _deadline_and_disconnect(port: int, path: str, row: Callable[..., bytes]
                                   ) -> tuple[Reply, float, Reply, Reply]:
    busy = await Connection.open(port)
    late = await Connection.open(port)
    gone = await Connection.open(port)
    since = await busy.send(predict_request(row(1.0, 2.0), path=path))
    await asyncio.sleep(0.05)  # the first request is in its forward pass (0.4 s)
    start = time.monotonic()
    timed_out = await late.request(
        predict_request(row(1.0, 2.0), {"X-Request-Timeout": "0.1"}, path))
    waited = time.monotonic() - start
    await gone.send(predict_request(row(9.0, 9.0), path=path))
    await asyncio.sleep(0.05)
    gone.close()  # its client gives up while it waits
    first = await busy.answer(since)
    after = await busy.request(predict_request(row(1.0, 2.0), path=path))
    late.close()
    busy.close()
    return timed_out, waited, first, after


@pytest.mark.parametrize("endpoint", list(ENDPOINTS), ids=list(ENDPOINTS))
def test_deadlines_and_disconnected_clients_leave_the_queue_before_the_forward_pass(
        server_factory: Callable[..., Any], endpoint: str) -> None:
    path, row, expired = ENDPOINTS[endpoint]
    server = server_factory(slow_env(0.4, 8, REQUEST_TIMEOUT_SECONDS="30"))
    timed_out, waited, first, after = asyncio.run(
        _deadline_and_disconnect(server.port, path, row))
    assert timed_out.status == 504
    assert timed_out.body == expired
    assert 0.09 <= waited < 0.3  # at its deadline, not once the running batch is done
    assert (first.status, after.status) == (200, 200)
    assert sample(server, "predictor_rejected_requests_total", {"reason": "deadline"}) == 1
    assert sample(server, "predictor_rejected_requests_total", {"reason": "disconnected"}) == 1
    # two forward passes of one row each: neither the late nor the gone request ran
    assert sample(server, "predictor_batch_size_count") == 2
    assert sample(server, "predictor_batch_size_sum") == 2
