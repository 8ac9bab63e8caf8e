"""SIGTERM under load over keep-alive connections: readiness turns 503, every answer closes its
connection, no request written to an open connection is lost, the process exits 0."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.conftest import ServerProcess
from tests.reliability.conftest import ROW, slow_env
from tests.reliability.httpclient import Connection, Lost, predict_request

pytestmark = pytest.mark.slow

WORKERS = 16
DRAIN = 2.0


@dataclass
class Tally:
    answered: int = 0
    after_sigterm: int = 0
    closing_answers: int = 0
    lost: list[str] = field(default_factory=list)
    readiness: list[int] = field(default_factory=list)
    refused: int = 0
    routing: bool = True  # the load balancer's view: False once it saw /readyz 503
    sigterm_at: float = 0.0


async def worker(port: int, tally: Tally, end: float) -> None:
    """Keep-alive requests back to back; a new connection only while the balancer routes."""
    conn: Connection | None = None
    for _ in range(20_000):  # bounded in count as well as in time
        if time.monotonic() > end:
            break
        if conn is None or conn.closed:
            if not tally.routing:
                break
            try:
                conn = await Connection.open(port)
            except ConnectionRefusedError:
                tally.refused += 1  # the listener closed before the balancer noticed
                break
        since = await conn.send(predict_request(ROW))
        try:
            reply = await conn.answer(since, timeout=10)
        except Lost as exc:
            tally.lost.append(str(exc))
            conn = None
            continue
        assert reply.status == 200, reply.body
        tally.answered += 1
        if tally.sigterm_at:
            tally.after_sigterm += 1
        tally.closing_answers += reply.closes
    if conn is not None:
        conn.close()


async def balancer(port: int, tally: Tally, end: float) -> None:
    """Polls /readyz every 50 ms on a fresh connection, as a load balancer's health check."""
    while time.monotonic() < end and tally.routing:
        try:
            conn = await Connection.open(port)
            reply = await conn.request(b"GET /readyz HTTP/1.1\r\nhost: x\r\n\r\n", timeout=5)
            conn.close()
        except (OSError, Lost):
            break
        tally.readiness.append(reply.status)
        if reply.status == 503:
            tally.routing = False
        await asyncio.sleep(0.05)


async def load_and_sigterm(server: ServerProcess) -> Tally:
    tally = Tally()
    end = time.monotonic() + 15
    tasks = [asyncio.ensure_future(worker(server.port, tally, end)) for _ in range(WORKERS)]
    await asyncio.sleep(1.0)
    tally.sigterm_at = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    await balancer(server.port, tally, end)
    await asyncio.wait_for(asyncio.gather(*tasks), 20)
    return tally


def test_sigterm_under_load_loses_no_request_written_to_an_open_connection(
        server_factory: Callable[..., Any]) -> None:
    server = server_factory(slow_env(0.005, 16, DRAIN_SECONDS=str(DRAIN),
                                     LOG_LEVEL="info"))
    tally = asyncio.run(load_and_sigterm(server))
    rc = server.proc.wait(15)
    assert (tally.lost, tally.refused) == ([], 0)
    assert tally.answered > 100 and tally.after_sigterm >= WORKERS
    assert tally.closing_answers >= WORKERS  # each connection's last answer said close
    assert tally.readiness[-1] == 503
    assert rc == 0, server.log()
    assert "draining for up to 2 s" in server.log()
