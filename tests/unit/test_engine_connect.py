"""``connect`` negotiates the API version as the Docker CLI does (``GET /_ping`` and its
``API-Version`` header), against a stand-in engine on loopback that answers only those paths."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from launcher._engine import connect
from launcher._engine_errors import EngineUnavailable


class StandInEngine(ThreadingHTTPServer):
    ping_status = 200
    ping_version: str | None = "1.45"
    asked: list[str]


class Handler(BaseHTTPRequestHandler):
    server: StandInEngine

    def do_GET(self) -> None:
        self.server.asked.append(self.path)
        if self.path == "/_ping":
            self.send_response(self.server.ping_status)
            if self.server.ping_version is not None:
                self.send_header("API-Version", self.server.ping_version)
            body = b"OK"
        elif self.path == "/version":
            self.send_response(200)
            body = json.dumps({"ApiVersion": "1.40", "Version": "19.03.15"}).encode()
        elif self.path.endswith("/info"):
            self.send_response(200)
            body = json.dumps({"ServerVersion": "19.03.15", "ID": "E1"}).encode()
        else:
            self.send_response(404)
            body = b"{}"
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def engine() -> Iterator[StandInEngine]:
    server = StandInEngine(("127.0.0.1", 0), Handler)
    server.asked = []
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def host(server: StandInEngine) -> dict[str, str]:
    return {"DOCKER_HOST": f"tcp://127.0.0.1:{server.server_address[1]}"}


def test_the_version_comes_from_one_ping_and_every_request_speaks_it(
        engine: StandInEngine) -> None:
    client = connect(host(engine), timeout=10)
    try:
        assert client.info().api_version == "1.45"
    finally:
        client.close()
    assert engine.asked == ["/_ping", "/v1.45/info"]


def test_an_engine_without_the_header_is_asked_its_version(engine: StandInEngine) -> None:
    engine.ping_version = None
    client = connect(host(engine), timeout=10)
    try:
        assert client.info().api_version == "1.40"
    finally:
        client.close()
    assert engine.asked == ["/_ping", "/version", "/v1.40/info"]


def test_an_engine_that_fails_the_ping_cannot_be_reached(engine: StandInEngine) -> None:
    engine.ping_status = 500
    with pytest.raises(EngineUnavailable) as exc:
        connect(host(engine), timeout=10)
    assert exc.value.message.startswith("cannot reach the Docker engine: 500 Server Error")
    assert engine.asked == ["/_ping"]
