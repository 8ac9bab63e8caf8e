"""The app in-process (no sockets): readiness, the predict path, hooks, metrics, OpenAPI."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp

from service._app import create_app
from service._predictor import Batch
from service._settings import Settings
from tests.service.asgi import request, running, wait_ready


class SumPredictor:
    """Width 3; prediction = row sum rounded, a deterministic stand-in for a model."""

    def __init__(self, width: int | None = 3, fail_setup: bool = False,
                 fail_predict: bool = False) -> None:
        self.input_width = None
        self._width = width
        self.fail_setup = fail_setup
        self.fail_predict = fail_predict
        self.release = threading.Event()
        self.release.set()
        self.info = {"model": "sum", "device": "cpu"}

    def setup(self, device: str) -> None:
        self.release.wait(10)
        if self.fail_setup:
            raise RuntimeError("weights are corrupt")
        self.input_width = self._width

    def predict(self, batch: Batch) -> Mapping[str, Sequence[Any]]:
        if self.fail_predict and batch.rows == 2:
            raise RuntimeError("bad kernel")
        return {"predictions": [round(sum(r)) for r in batch.tolist()]}


class HookPredictor(SumPredictor):
    def decode(self, payload: Any) -> Any:
        if "words" in payload:
            return [[float(len(w)), 0.0, 0.0] for w in payload["words"]]  # may raise TypeError
        if "text" not in payload:
            raise ValueError("send {'text': '...'}")
        return [[float(len(w)), 0.0, 0.0] for w in payload["text"].split()]

    def encode(self, outputs: dict[str, list[Any]]) -> Any:
        if outputs["predictions"] == [7]:
            raise RuntimeError("cannot encode 7")
        return {"lengths": outputs["predictions"]}



CPU_READY = {"replica": 0, "device": "cpu", "state": "ready", "reason": None}


def serve(predictor: Any, scenario: Callable[[ASGIApp], Awaitable[None]], **settings: Any) -> None:
    app = create_app(predictor, Settings(**settings), CollectorRegistry(), nvml_loader=None)

    async def main() -> None:
        async with running(app):
            await scenario(app)

    asyncio.run(main())


def test_readyz_is_503_until_the_model_is_loaded_then_200() -> None:
    predictor = SumPredictor()
    predictor.release.clear()

    async def scenario(app: ASGIApp) -> None:
        starting = await request(app, "GET", "/readyz")
        early = await request(app, "POST", "/predict", b'{"inputs": [[1, 2, 3]]}')
        alive = await request(app, "GET", "/healthz")
        predictor.release.set()
        ready = await wait_ready(app)
        # the replicas are listed once torch has said which devices it sees: maybe not yet
        assert (starting.status, starting.json()["status"]) == (503, "starting")
        assert {r["state"] for r in starting.json()["replicas"]} <= {"starting"}
        assert (early.status, early.json()) == (503, {"detail": "model is not ready (starting)"})
        assert (alive.status, alive.json()["status"]) == (200, "ok")
        assert (ready.status, ready.json()) == (200, {"status": "ready", "replicas": [CPU_READY]})

    serve(predictor, scenario)


def test_health_probes_answer_head_as_well_as_get() -> None:
    """Load balancers and some probes send HEAD; it must not be a 405."""

    async def scenario(app: ASGIApp) -> None:
        await wait_ready(app)
        for path in ("/healthz", "/readyz"):
            head = await request(app, "HEAD", path)
            assert head.status == 200, path

    serve(SumPredictor(), scenario)


@pytest.mark.parametrize("predictor, settings, reason", [
    (SumPredictor(fail_setup=True), {}, "weights are corrupt"),
    (SumPredictor(width=None), {},
     "the model's input width is unknown (hint: set INPUT_WIDTH to the number of values per row)"),
    (SumPredictor(), {"input_width": 4},
     "INPUT_WIDTH=4 but the model takes 3 values (hint: unset INPUT_WIDTH or fix it)"),
], ids=["setup-raises", "width-unknown", "width-mismatch"])
def test_a_model_that_cannot_load_reports_failed_with_the_reason(
        predictor: SumPredictor, settings: dict[str, Any], reason: str) -> None:
    async def scenario(app: ASGIApp) -> None:
        ready = await wait_ready(app)
        alive = await request(app, "GET", "/healthz")
        failed = {"status": "failed", "replicas": [
            {"replica": 0, "device": "cpu", "state": "failed", "reason": reason}],
            "reason": reason}
        assert (ready.status, ready.json()) == (503, failed)
        assert (alive.status, alive.json()) == (503, failed)

    serve(predictor, scenario, **settings)


def test_declared_input_width_serves_a_model_that_does_not_know_its_own() -> None:
    async def scenario(app: ASGIApp) -> None:
        await wait_ready(app)
        reply = await request(app, "POST", "/predict", b'{"inputs": [[1, 2]]}')
        assert (reply.status, reply.json()) == (200, {"predictions": [3]})

    serve(SumPredictor(width=None), scenario, input_width=2)


def test_predict_answers_each_row_in_order_and_concurrent_callers_share_batches() -> None:
    async def scenario(app: ASGIApp) -> None:
        await wait_ready(app)
        one = await request(app, "POST", "/predict", b'{"inputs": [[1, 2, 3], [4, 5, 6.4]]}')
        many = await asyncio.gather(*(request(app, "POST", "/predict",
                                              orjson.dumps({"inputs": [[i, 0, 0]]}))
                                      for i in range(50)))
        assert (one.status, one.json()) == (200, {"predictions": [6, 15]})
        assert one.headers["content-type"] == "application/json"
        assert [(r.status, r.json()) for r in many] == [(200, {"predictions": [i]}) for i in range(50)]
        metrics = (await request(app, "GET", "/metrics")).body.decode()
        assert 'predictor_requests_total{code="200",endpoint="/predict"} 51.0' in metrics
        assert 'predictor_model_info{device="cpu",model="sum"} 1.0' in metrics
        batches = next(line for line in metrics.splitlines()
                       if line.startswith("predictor_batch_size_count"))
        assert float(batches.split()[1]) < 51  # concurrent requests were merged

    serve(SumPredictor(), scenario)


@pytest.mark.parametrize("root_path", ["", "/api"], ids=["at-root", "behind-root-path"])
@pytest.mark.parametrize("body, chunks, status, detail", [
    (b"x" * 200, None, 413, "body is 200 bytes, over the limit of 100 bytes (MAX_BODY_BYTES)"),
    (b"", [b"x" * 60, b"x" * 60], 413, "body is over the limit of 100 bytes (MAX_BODY_BYTES)"),
    (b"", [b'{"inputs": ', b"[[1, 2, 3]]}"], 200, None),
    (b'{"inputs": [[1, 2]]}', None, 422, "row 0 of 'inputs' has 2 values, expected 3"),
    (b"{", None, 400,
     "body is not valid JSON: unexpected end of data: line 1 column 2 (char 1)"),
], ids=["content-length-over", "chunked-over", "chunked-ok", "wrong-width", "malformed"])
def test_bad_requests_get_a_4xx_and_the_service_stays_ready(
        body: bytes, chunks: list[bytes] | None, status: int, detail: str | None,
        root_path: str) -> None:
    """Behind a root path (uvicorn --root-path, a proxy prefix) it is the same predict path, with
    the same MAX_BODY_BYTES."""

    async def scenario(app: ASGIApp) -> None:
        await wait_ready(app)
        reply = await request(app, "POST", "/predict", body, chunks=chunks, root_path=root_path)
        assert reply.status == status
        if detail is not None:
            assert reply.json() == {"detail": detail}
        assert (await request(app, "GET", "/readyz")).status == 200

    serve(SumPredictor(), scenario, max_body_bytes=100)


def test_a_failing_forward_pass_is_a_500_with_the_reason_and_the_service_recovers() -> None:
    async def scenario(app: ASGIApp) -> None:
        await wait_ready(app)
        bad = await request(app, "POST", "/predict", b'{"inputs": [[1, 2, 3], [1, 1, 1]]}')
        good = await request(app, "POST", "/predict", b'{"inputs": [[1, 2, 3]]}')
        assert (bad.status, bad.json()) == (500, {"detail": "inference failed: RuntimeError: bad kernel"})
        assert (good.status, good.json()) == (200, {"predictions": [6]})

    serve(SumPredictor(fail_predict=True), scenario)


def test_decode_and_encode_hooks_shape_requests_and_responses() -> None:
    async def scenario(app: ASGIApp) -> None:
        await wait_ready(app)
        ok = await request(app, "POST", "/predict", b'{"text": "hello big world"}')
        bad = await request(app, "POST", "/predict", b'{"inputs": [[1, 2, 3]]}')
        assert (ok.status, ok.json()) == (200, {"lengths": [5, 3, 5]})
        typed = await request(app, "POST", "/predict", b'{"words": [1, 2]}')
        unencodable = await request(app, "POST", "/predict", b'{"text": "seven.."}')
        assert (bad.status, bad.json()) == (422, {"detail": "send {'text': '...'}"})
        assert (typed.status, typed.json()) == (422, {"detail": (
            "the body does not fit this model: TypeError: object of type 'int' has no len()")})
        assert (unencodable.status, unencodable.json()) == (
            500, {"detail": "inference failed: RuntimeError: cannot encode 7"})

    serve(HookPredictor(), scenario)


def test_openapi_describes_predict() -> None:
    async def scenario(app: ASGIApp) -> None:
        spec = (await request(app, "GET", "/openapi.json")).json()
        op = spec["paths"]["/predict"]["post"]
        schema = op["requestBody"]["content"]["application/json"]["schema"]
        assert schema["required"] == ["inputs"]
        assert schema["properties"]["inputs"]["items"] == {"type": "array",
                                                          "items": {"type": "number"}}
        assert {"200", "400", "413", "422", "503"} <= set(op["responses"])
        assert (await request(app, "GET", "/docs")).status == 200

    serve(SumPredictor(), scenario)
