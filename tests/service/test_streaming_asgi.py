"""A stream in process, through a server without our disconnect hook (plain ASGI): the client's
``http.disconnect`` from ``receive`` still closes the generator and counts the cancel."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from starlette.types import Message

from tests.service.asgi import wait_ready
from tests.service.stream_predictor import Ticker
from tests.service.test_app_reliability import serve


def test_a_disconnect_told_by_receive_closes_the_generator(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    log = tmp_path / "ticker.log"
    monkeypatch.setenv("TICKER_LOG", str(log))

    async def scenario(app: Any, registry: Any) -> None:
        await wait_ready(app)
        left = asyncio.Event()
        body = b'{"id": "asgi", "n": 100, "pace": 0.05}'
        messages: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
        sent: list[Message] = []

        async def receive() -> Message:
            if messages:
                return messages.pop(0)
            await left.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            sent.append(message)
            if sum(m.get("body", b"").startswith(b"data: ") for m in sent) == 2:
                left.set()  # the client leaves after two chunks

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "POST", "scheme": "http", "path": "/predict",
                 "raw_path": b"/predict", "query_string": b"", "root_path": "",
                 "headers": [(b"accept", b"text/event-stream"),
                             (b"content-length", b"%d" % len(body))],
                 "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000), "state": {}}
        await asyncio.wait_for(app(scope, receive, send), 10)
        for _ in range(100):  # the close runs on the replica's thread
            if registry.get_sample_value("predictor_in_flight_streams") == 0:
                break
            await asyncio.sleep(0.05)
        assert sent[0]["status"] == 200
        assert registry.get_sample_value("predictor_streams_cancelled_total") == 1
        assert registry.get_sample_value("predictor_in_flight_streams") == 0
        events = log.read_text().split("\n")
        assert "asgi exit" in events and len([e for e in events if "yield" in e]) < 10

    serve(Ticker, scenario, devices=("cpu",), replicas_per_device=1)
