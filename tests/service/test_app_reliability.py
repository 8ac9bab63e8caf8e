"""The app in-process: out-of-memory batches, deadlines from the header, the bearer token,
readiness while draining, and what the OpenAPI says about them."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import orjson
import pytest
import torch
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp

from service._app import create_app
from service._drain import Drain
from service._predictor import Batch
from service._settings import Settings
from tests.service.asgi import request, running, wait_ready

BODY = b'{"inputs": [[1, 2, 3]]}'


class OomPredictor:
    """Width 3; raises torch's CUDA out-of-memory error for batches over ``fits`` rows, as a
    model on a GPU does (torch.cuda.OutOfMemoryError exists in CPU builds too)."""

    def __init__(self, fits: int) -> None:
        self.input_width = 3
        self.fits = fits
        self.batches: list[int] = []

    def setup(self, device: str) -> None:
        pass

    def predict(self, batch: Batch) -> Mapping[str, Sequence[Any]]:
        if batch.rows > self.fits and len(self.batches) >= 2:  # the warm-up passes fit
            raise torch.cuda.OutOfMemoryError(
                "CUDA out of memory. Tried to allocate 20.00 GiB\nmore text")
        self.batches.append(batch.rows)
        return {"predictions": [round(sum(r)) for r in batch.tolist()]}


def serve(predictor: Any, scenario: Callable[[ASGIApp, CollectorRegistry], Awaitable[None]],
          drain: Drain | None = None, **settings: Any) -> None:
    registry = CollectorRegistry()
    app = create_app(predictor, Settings(**settings), registry, nvml_loader=None, drain=drain)

    async def main() -> None:
        async with running(app):
            await scenario(app, registry)

    asyncio.run(main())


def rejected(registry: CollectorRegistry, reason: str) -> float | None:
    return registry.get_sample_value("predictor_rejected_requests_total", {"reason": reason})


@pytest.mark.parametrize("fits, status, body, oom", [
    (2, 200, {"predictions": [6, 3, 5, 7]}, 0.0),
    (1, 503, {"detail": "inference failed: out of device memory: CUDA out of memory. Tried to "
                        "allocate 20.00 GiB (also in halves: the batch of 4 rows was retried as "
                        "2 + 2); send fewer rows per request or lower MAX_BATCH_ROWS"}, 1.0),
], ids=["halves-fit-200", "halves-fail-503"])
def test_a_batch_out_of_device_memory_is_split_once_and_the_service_stays_ready(
        fits: int, status: int, body: dict[str, Any], oom: float) -> None:
    predictor = OomPredictor(fits)

    async def scenario(app: ASGIApp, registry: CollectorRegistry) -> None:
        await wait_ready(app)
        reply = await request(app, "POST", "/predict",
                              b'{"inputs": [[1, 2, 3], [1, 1, 1], [2, 2, 1], [3, 3, 1]]}')
        assert (reply.status, reply.json()) == (status, body)
        assert rejected(registry, "out_of_memory") == oom
        small = await request(app, "POST", "/predict", BODY)
        assert (small.status, small.json()) == (200, {"predictions": [6]})
        assert (await request(app, "GET", "/readyz")).status == 200

    serve(predictor, scenario)


@pytest.mark.parametrize("value, status, detail", [
    (b"soon", 400, ("header 'X-Request-Timeout' has value 'soon': not a number of seconds "
                   "between 0 and 86400 (0: no deadline), e.g. 2.5")),
    (b"-2", 400, ("header 'X-Request-Timeout' has value '-2': not a number of seconds "
                 "between 0 and 86400 (0: no deadline), e.g. 2.5")),
    (b"5", 200, None),
    (b"0", 200, None),
], ids=["word", "negative", "seconds", "zero-no-deadline"])
def test_x_request_timeout_is_checked(value: bytes, status: int, detail: str | None) -> None:
    async def scenario(app: ASGIApp, registry: CollectorRegistry) -> None:
        await wait_ready(app)
        reply = await request(app, "POST", "/predict", BODY, headers=[
            (b"content-length", b"%d" % len(BODY)), (b"x-request-timeout", value)])
        assert reply.status == status
        if detail is not None:
            assert reply.json() == {"detail": detail}

    serve(OomPredictor(1 << 20), scenario)


@pytest.mark.parametrize("authorization, status, challenge, detail", [
    (None, 401, 'Bearer realm="predictor"',
     "missing bearer token: send the header Authorization: Bearer <API_TOKEN>"),
    (b"Basic czNjcmV0", 401, 'Bearer realm="predictor"',
     "missing bearer token: send the header Authorization: Bearer <API_TOKEN>"),
    (b"Bearer wrong", 401, 'Bearer realm="predictor", error="invalid_token"',
     "wrong bearer token in Authorization"),
    (b"Bearer s3cret-but-longer", 401, 'Bearer realm="predictor", error="invalid_token"',
     "wrong bearer token in Authorization"),
    (b"bearer s3cret", 200, None, None),
], ids=["missing", "basic", "wrong", "prefix-of-token", "right"])
def test_api_token_guards_predict_but_not_health_or_metrics(
        authorization: bytes | None, status: int, challenge: str | None,
        detail: str | None) -> None:
    predictor = OomPredictor(1 << 20)

    async def scenario(app: ASGIApp, registry: CollectorRegistry) -> None:
        await wait_ready(app)
        headers = [(b"content-length", b"%d" % len(BODY))]
        if authorization is not None:
            headers.append((b"authorization", authorization))
        reply = await request(app, "POST", "/predict", BODY, headers=headers)
        assert reply.status == status
        assert reply.headers.get("www-authenticate") == challenge
        if detail is not None:
            assert reply.json() == {"detail": detail}
        assert predictor.batches == [1, 64] + ([1] if status == 200 else [])  # no work queued
        for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
            assert (await request(app, "GET", path)).status == 200, path
        spec = (await request(app, "GET", "/openapi.json")).json()
        assert spec["paths"]["/predict"]["post"]["security"] == [{"bearer": []}]
        assert spec["components"]["securitySchemes"]["bearer"] == {
            "type": "http", "scheme": "bearer"}

    serve(predictor, scenario, api_token="s3cret")


def test_readiness_is_503_while_draining_and_health_stays_200() -> None:
    drain = Drain(5.0)

    async def scenario(app: ASGIApp, registry: CollectorRegistry) -> None:
        await wait_ready(app)
        assert (await request(app, "GET", "/readyz")).status == 200
        drain.draining = True
        ready = await request(app, "GET", "/readyz")
        assert (ready.status, ready.json()["status"]) == (503, "draining")
        assert (await request(app, "GET", "/healthz")).status == 200
        assert (await request(app, "POST", "/predict", BODY)).status == 200  # still served

    serve(OomPredictor(1 << 20), scenario, drain=drain)


def test_openapi_documents_the_deadline_header_and_the_overload_answers() -> None:
    async def scenario(app: ASGIApp, registry: CollectorRegistry) -> None:
        op = (await request(app, "GET", "/openapi.json")).json()["paths"]["/predict"]["post"]
        assert [p["name"] for p in op["parameters"]] == ["X-Request-Timeout"]
        assert {"400", "401", "413", "422", "503", "504"} <= set(op["responses"])
        assert "Retry-After" in op["responses"]["503"]["headers"]
        assert "security" not in op  # no API_TOKEN here

    serve(OomPredictor(1 << 20), scenario)


class GatedPredictor(OomPredictor):
    """Each pass after the warm-up waits for ``gate``: a forward pass that lasts on demand."""

    def __init__(self) -> None:
        super().__init__(1 << 20)
        self.gate = threading.Event()

    def predict(self, batch: Batch) -> Mapping[str, Sequence[Any]]:
        if len(self.batches) >= 2:
            self.gate.wait(10)
        return super().predict(batch)


def test_without_the_servers_hook_a_disconnect_seen_by_receive_leaves_the_queue() -> None:
    predictor = GatedPredictor()

    async def scenario(app: ASGIApp, registry: CollectorRegistry) -> None:
        await wait_ready(app)
        first = asyncio.ensure_future(request(app, "POST", "/predict", BODY))
        await asyncio.sleep(0.05)  # in its forward pass, held by the gate
        messages = [{"type": "http.request", "body": b'{"inputs": [[9, 9, 9]]}',
                     "more_body": False}]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await asyncio.sleep(0.05)
            return {"type": "http.disconnect"}  # the client left while its request waited

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "POST", "scheme": "http", "path": "/predict", "raw_path": b"/predict",
                 "query_string": b"", "root_path": "", "headers": [], "state": {},
                 "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000)}
        await asyncio.wait_for(app(scope, receive, send), 5)
        predictor.gate.set()
        assert (await first).status == 200
        assert sent[0]["status"] == 499
        assert rejected(registry, "disconnected") == 1.0
        assert predictor.batches == [1, 64, 1]  # the gone request never ran

    serve(predictor, scenario)


def test_api_token_guards_the_v2_infer_route_too() -> None:
    async def scenario(app: ASGIApp, registry: CollectorRegistry) -> None:
        await wait_ready(app)
        body = (b'{"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", '
                b'"data": [1, 2, 3]}]}')
        length = [(b"content-length", b"%d" % len(body))]
        denied = await request(app, "POST", "/v2/models/digits/infer", body, headers=length)
        assert (denied.status, denied.json()) == (401, {"error": (
            "missing bearer token: send the header Authorization: Bearer <API_TOKEN>")})
        assert denied.headers["www-authenticate"] == 'Bearer realm="predictor"'
        allowed = await request(app, "POST", "/v2/models/digits/infer", body,
                                headers=[*length, (b"authorization", b"Bearer s3cret")])
        assert allowed.status == 200, allowed.body
        assert (await request(app, "GET", "/v2/health/ready")).status == 200  # probes open

    serve(OomPredictor(1 << 20), scenario, api_token="s3cret")


def test_v2_answers_a_batch_out_of_device_memory_as_predict_does() -> None:
    """One mapping of failures for both routes: the same 503 text, counted once."""
    body = orjson.dumps({"inputs": [{"name": "input", "shape": [4, 3], "datatype": "FP32",
                                     "data": [1, 2, 3, 1, 1, 1, 2, 2, 1, 3, 3, 1]}]})

    async def scenario(app: ASGIApp, registry: CollectorRegistry) -> None:
        await wait_ready(app)
        reply = await request(app, "POST", "/v2/models/oom/infer", body)
        assert (reply.status, reply.json()) == (503, {"error": (
            "inference failed: out of device memory: CUDA out of memory. Tried to allocate "
            "20.00 GiB (also in halves: the batch of 4 rows was retried as 2 + 2); send fewer "
            "rows per request or lower MAX_BATCH_ROWS")})
        assert rejected(registry, "out_of_memory") == 1.0
        assert (await request(app, "GET", "/v2/health/ready")).status == 200

    serve(OomPredictor(1), scenario, model_name="oom")
