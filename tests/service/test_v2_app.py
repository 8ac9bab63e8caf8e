"""The Open Inference Protocol in-process (no sockets): readiness answers, one batcher shared
with /predict, the admission hook, HEAD, root paths and the OpenAPI entries."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, ClassVar

import orjson
import pytest
from starlette.types import ASGIApp, Message, Receive, Scope

from service._admission import QueueFull
from service._batcher import NoReplica
from service._http import DISCONNECT_HOOK
from service._predictor import Batch
from service._v2 import ROUTES, ModelSpec, TensorSpec
from service._v2_server import V2Server
from tests.service.asgi import request, wait_ready
from tests.service.test_app import SumPredictor, serve


def infer_body(*rows: list[float]) -> bytes:
    return orjson.dumps({"inputs": [{"name": "input", "shape": [len(rows), 3],
                                     "datatype": "FP32", "data": list(rows)}]})


def test_while_the_model_loads_v2_answers_503_with_retry_after_and_live_is_200() -> None:
    predictor = SumPredictor()
    predictor.release.clear()
    not_ready = "model 'sum' is not ready (starting)"

    async def scenario(app: ASGIApp) -> None:
        replies = {path: await request(app, "GET", path) for path in (
            "/v2/health/live", "/v2/health/ready", "/v2/models/sum/ready",
            "/v2/models/sum")}
        infer = await request(app, "POST", "/v2/models/sum/infer", infer_body([1, 2, 3]))
        predictor.release.set()
        await wait_ready(app)
        ready = await request(app, "GET", "/v2/health/ready")
        assert {p: (r.status, r.json()) for p, r in replies.items()} == {
            "/v2/health/live": (200, {"live": True}),
            "/v2/health/ready": (503, {"ready": False, "error": not_ready}),
            "/v2/models/sum/ready": (503, {"name": "sum", "ready": False,
                                                    "error": not_ready}),
            "/v2/models/sum": (503, {"error": not_ready})}
        assert [replies[p].headers.get("retry-after") for p in replies] == [None, "1", "1", "1"]
        assert (infer.status, infer.json(), infer.headers["retry-after"]) == (
            503, {"error": not_ready}, "1")
        assert (ready.status, ready.json()) == (200, {"ready": True})

    serve(predictor, scenario, model_name="sum")


def test_a_model_that_failed_to_load_is_not_live_and_says_why() -> None:
    async def scenario(app: ASGIApp) -> None:
        await wait_ready(app)
        live = await request(app, "GET", "/v2/health/live")
        infer = await request(app, "POST", "/v2/models/sum/infer", infer_body([1, 2, 3]))
        assert (live.status, live.json()) == (503, {"live": False})
        assert (infer.status, infer.json()) == (
            503, {"error": "model 'sum' is not ready (failed: weights are corrupt)"})

    serve(SumPredictor(fail_setup=True), scenario, model_name="sum")


class GatedSum(SumPredictor):
    """Records each batch's first values; once armed, the next batch waits for the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.gate = threading.Event()
        self.batches: list[list[float]] = []

    def predict(self, batch: Batch) -> Mapping[str, Sequence[Any]]:
        if self.armed:
            self.armed = False
            self.gate.wait(10)
        self.batches.append([row[0] for row in batch.tolist()])
        return super().predict(batch)


def test_v2_and_predict_requests_join_the_same_batches() -> None:
    predictor = GatedSum()

    async def scenario(app: ASGIApp) -> None:
        await wait_ready(app)
        predictor.batches.clear()
        predictor.armed = True
        first = asyncio.ensure_future(request(app, "POST", "/predict", b'{"inputs": [[0, 0, 0]]}'))
        await asyncio.sleep(0.05)  # the first batch is in its forward pass, held by the gate
        calls = [request(app, "POST", "/predict", orjson.dumps({"inputs": [[i, 0, 0]]}))
                 for i in range(1, 4)]
        calls += [request(app, "POST", "/v2/models/sum/infer", infer_body([i, 0, 0]))
                  for i in range(10, 13)]
        pending = asyncio.gather(*calls)
        await asyncio.sleep(0.05)
        predictor.gate.set()
        replies = await pending
        await first
        assert [r.status for r in replies] == [200] * 6
        assert [r.json()["predictions"] for r in replies[:3]] == [[1], [2], [3]]
        assert [r.json()["outputs"][0]["data"] for r in replies[3:]] == [[10], [11], [12]]
        assert predictor.batches == [[0.0], [1.0, 2.0, 3.0, 10.0, 11.0, 12.0]]
        metrics = (await request(app, "GET", "/metrics")).body.decode()
        assert 'predictor_requests_total{code="200",endpoint="/predict"} 4.0' in metrics
        assert ('predictor_requests_total{code="200",endpoint="/v2/models/{model_name}/infer"} '
                '3.0') in metrics

    serve(predictor, scenario, model_name="sum", max_wait_ms=0)


class Admitting(SumPredictor):
    def predict(self, batch: Batch) -> Mapping[str, Sequence[Any]]:
        if batch.rows == 1 and batch.values[0] == 9:  # the admission's own error type
            raise QueueFull("queue_rows", "the queue is full (MAX_QUEUE_ROWS=0)", 2)
        if batch.rows == 1 and batch.values[0] == 7:
            raise RuntimeError("bad kernel")
        return super().predict(batch)


@pytest.mark.parametrize("row, status, error, retry_after", [
    ([9, 0, 0], 503, "the queue is full (MAX_QUEUE_ROWS=0)", "2"),
    ([7, 0, 0], 500, "inference failed: RuntimeError: bad kernel", None),
], ids=["service-error-with-status", "model-failure"])
def test_a_failed_inference_answers_with_the_errors_status_or_500(
        row: list[float], status: int, error: str, retry_after: str | None) -> None:
    async def scenario(app: ASGIApp) -> None:
        await wait_ready(app)
        reply = await request(app, "POST", "/v2/models/sum/infer", infer_body(row))
        assert (reply.status, reply.json(), reply.headers.get("retry-after")) == (
            status, {"error": error}, retry_after)
        again = await request(app, "POST", "/v2/models/sum/infer", infer_body([1, 1, 1]))
        assert again.status == 200

    serve(Admitting(), scenario, model_name="sum")


def test_head_probes_get_the_status_without_a_body_and_root_paths_are_honoured() -> None:
    async def scenario(app: ASGIApp) -> None:
        await wait_ready(app)
        head = await request(app, "HEAD", "/v2/health/ready")
        assert (head.status, head.body, head.headers["content-length"]) == (200, b"", "14")
        proxied = await request(app, "POST", "/v2/models/sum/infer", infer_body([1, 2, 3]),
                                root_path="/api")
        assert (proxied.status, proxied.json()["outputs"][0]["data"]) == (200, [6])

    serve(SumPredictor(), scenario, model_name="sum")


def test_openapi_documents_every_v2_route() -> None:
    async def scenario(app: ASGIApp) -> None:
        spec = (await request(app, "GET", "/openapi.json")).json()
        assert set(ROUTES.values()) <= set(spec["paths"])
        infer = spec["paths"]["/v2/models/{model_name}/infer"]["post"]
        assert {"200", "400", "404", "413", "503", "504"} <= set(infer["responses"])
        assert [p["name"] for p in infer["parameters"]] == [
            "model_name", "Inference-Header-Content-Length", "X-Request-Timeout"]
        assert set(infer["requestBody"]["content"]) == {"application/json",
                                                        "application/octet-stream"}
        ready = spec["paths"]["/v2/models/{model_name}/versions/{model_version}/ready"]["get"]
        assert [p["name"] for p in ready["parameters"]] == ["model_name", "model_version"]
        assert "/predict" in spec["paths"]

    serve(SumPredictor(), scenario, model_name="sum")


class MisDeclared(SumPredictor):
    output_datatypes: ClassVar[dict[str, str]] = {"predictions": "FLOAT"}


def test_a_predictor_declaring_an_unknown_datatype_fails_to_load_with_the_reason() -> None:
    async def scenario(app: ASGIApp) -> None:
        ready = await wait_ready(app)
        infer = await request(app, "POST", "/v2/models/sum/infer", infer_body([1, 2, 3]))
        reason = ("output_datatypes: datatype 'FLOAT' is not a tensor datatype: use one of BOOL, "
                  "UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64, "
                  "BF16, BYTES (hint: map each output name to a datatype, e.g. 'FP32')")
        assert (ready.status, ready.json()["reason"]) == (503, reason)
        assert (infer.status, infer.json()) == (
            503, {"error": f"model 'sum' is not ready (failed: {reason})"})

    serve(MisDeclared(), scenario, model_name="sum")


class NoReplicaLeft:
    """The service's side as V2Server sees it, when every replica has just failed."""

    status, reason, timeout = "ready", "", None
    model = ModelSpec("sum", "python", TensorSpec("input", "FP32", (-1, 3)),
                      (TensorSpec("predictions", "INT64", (-1,)),))

    def failure(self, error: Exception) -> tuple[int, str, int | None]:
        raise AssertionError(f"a replica-less model is V2Server's own answer, not {error!r}")

    def infer(self, values: Any, rows: int, timeout: float | None, receive: Receive | None,
              on_disconnect: Callable[[Callable[[], None]], None] | None
              ) -> Awaitable[Mapping[str, Sequence[Any]]]:
        async def fail() -> Mapping[str, Sequence[Any]]:
            raise NoReplica("every replica failed: CUDA error: an illegal memory access")
        return fail()


def test_a_request_no_replica_could_run_gets_503_with_retry_after() -> None:
    server = V2Server(NoReplicaLeft(), "sum", "0.1.0", 8, 1 << 20)
    sent: list[Message] = []

    async def read_body(scope: Scope, receive: Receive) -> bytes:
        return infer_body([1, 2, 3])

    async def receive() -> Message:  # the body comes from read_body
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v2/models/sum/infer", "headers": []}
    asyncio.run(server(scope, receive, send, read_body, "/v2/models/sum/infer"))
    start, body = sent
    assert (start["status"], dict(start["headers"])[b"retry-after"]) == (503, b"1")
    assert orjson.loads(body["body"]) == {"error": (
        "model 'sum' is not ready: every replica failed: CUDA error: an illegal memory access")}


@pytest.mark.parametrize("path", ["/predict", "/v2/models/sum/infer"], ids=["predict", "v2"])
def test_a_client_gone_before_its_body_arrived_gets_no_answer_and_queues_nothing(
        path: str) -> None:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    async def scenario(app: ASGIApp) -> None:
        await wait_ready(app)
        scope = {"type": "http", "method": "POST", "path": path, "root_path": "",
                 "headers": [(b"content-length", b"99")]}
        await app(scope, receive, send)
        after = await request(app, "POST", path, infer_body([1, 2, 3]) if "v2" in path
                              else b'{"inputs": [[1, 2, 3]]}')
        metrics = (await request(app, "GET", "/metrics")).body.decode()
        assert sent == [] and after.status == 200
        # the one batch is the later request's: the gone one never reached the queue
        assert 'predictor_batch_size_count{device="cpu",replica="0"} 1.0' in metrics

    serve(SumPredictor(), scenario, model_name="sum")


@pytest.mark.parametrize("path, value, status, body", [
    ("/v2/models/sum/infer", b"soon", 400, {"error": (
        "header 'X-Request-Timeout' has value 'soon': not a number of seconds between 0 and "
        "86400 (0: no deadline), e.g. 2.5")}),
    ("/predict", b"soon", 400, {"detail": (
        "header 'X-Request-Timeout' has value 'soon': not a number of seconds between 0 and "
        "86400 (0: no deadline), e.g. 2.5")}),
    ("/v2/models/sum/infer", b"-2", 400, {"error": (
        "header 'X-Request-Timeout' has value '-2': not a number of seconds between 0 and "
        "86400 (0: no deadline), e.g. 2.5")}),
    ("/v2/models/sum/infer", b"0", 200, None),
], ids=["v2-word", "predict-word", "v2-negative", "v2-zero-no-deadline"])
def test_x_request_timeout_is_checked_alike_on_v2_and_predict(
        path: str, value: bytes, status: int, body: dict[str, str] | None) -> None:
    async def scenario(app: ASGIApp) -> None:
        await wait_ready(app)
        content = infer_body([1, 2, 3]) if "v2" in path else b'{"inputs": [[1, 2, 3]]}'
        reply = await request(app, "POST", path, content, headers=[
            (b"content-length", b"%d" % len(content)), (b"x-request-timeout", value)])
        assert reply.status == status
        if body is not None:
            assert reply.json() == body
            metrics = (await request(app, "GET", "/metrics")).body.decode()
            assert 'predictor_batch_size_count{device="cpu",replica="0"}' not in metrics

    serve(SumPredictor(), scenario, model_name="sum")


@pytest.mark.parametrize("told_by", ["hook", "receive"])
def test_a_v2_request_past_its_deadline_or_whose_client_left_never_reaches_a_forward_pass(
        told_by: str) -> None:
    """The deadline: X-Request-Timeout, else REQUEST_TIMEOUT_SECONDS (504 each); the client
    that left: told by our server's disconnect hook, or by ``receive`` under another server."""
    predictor = GatedSum()
    left = asyncio.Event()
    callbacks: list[Callable[[], None]] = []
    gone_body = infer_body([3, 0, 0])
    sent: list[Message] = []

    async def receive() -> Message:
        if not sent:  # the body once, then the disconnect when the client leaves
            sent.append({"type": "read"})
            return {"type": "http.request", "body": gone_body, "more_body": False}
        await asyncio.wait_for(left.wait(), 10)
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v2/models/sum/infer", "root_path": "",
             "headers": [(b"content-length", b"%d" % len(gone_body))]}
    if told_by == "hook":
        scope["extensions"] = {DISCONNECT_HOOK: callbacks.append}

    async def scenario(app: ASGIApp) -> None:
        await wait_ready(app)
        predictor.batches.clear()
        predictor.armed = True
        first = asyncio.ensure_future(
            request(app, "POST", "/v2/models/sum/infer", infer_body([0, 0, 0])))
        await asyncio.sleep(0.05)  # the first batch is in its forward pass, held by the gate
        body = infer_body([1, 0, 0])
        own = asyncio.ensure_future(request(app, "POST", "/v2/models/sum/infer", body, headers=[
            (b"content-length", b"%d" % len(body)), (b"x-request-timeout", b"0.05")]))
        default = asyncio.ensure_future(
            request(app, "POST", "/v2/models/sum/infer", infer_body([2, 0, 0])))
        gone = asyncio.ensure_future(app(scope, receive, send))
        await asyncio.sleep(0.02)
        if told_by == "hook":
            assert len(callbacks) == 1  # registered once the request was queued
            callbacks[0]()
        else:
            left.set()
        replies = await asyncio.gather(own, default)
        predictor.gate.set()
        assert (await first).status == 200
        await gone
        after = await request(app, "POST", "/v2/models/sum/infer", infer_body([4, 0, 0]))
        assert [(r.status, r.json()) for r in replies] == [
            (504, {"error": "the request waited its deadline of 0.05 s in the queue"}),
            (504, {"error": "the request waited its deadline of 0.2 s in the queue"})]
        assert after.status == 200
        assert predictor.batches == [[0.0], [4.0]]  # none of the three ran
        metrics = (await request(app, "GET", "/metrics")).body.decode()
        assert 'predictor_rejected_requests_total{reason="deadline"} 2.0' in metrics
        assert 'predictor_rejected_requests_total{reason="disconnected"} 1.0' in metrics

    serve(predictor, scenario, model_name="sum", max_wait_ms=0, request_timeout_seconds=0.2)


def test_a_v2_request_the_full_queue_refuses_is_counted_like_predicts() -> None:
    predictor = GatedSum()

    async def scenario(app: ASGIApp) -> None:
        await wait_ready(app)
        predictor.armed = True
        first = asyncio.ensure_future(
            request(app, "POST", "/v2/models/sum/infer", infer_body([0, 0, 0])))
        await asyncio.sleep(0.05)  # its one row fills the queue (MAX_QUEUE_ROWS=1)
        full = await request(app, "POST", "/v2/models/sum/infer", infer_body([1, 0, 0]))
        predictor.gate.set()
        assert (await first).status == 200
        assert (full.status, full.json(), full.headers["retry-after"]) == (503, {"error": (
            "queue is full: 1 rows ahead, 1 more would pass the limit of 1 rows "
            "(MAX_QUEUE_ROWS); retry in 1 s")}, "1")
        metrics = (await request(app, "GET", "/metrics")).body.decode()
        assert 'predictor_rejected_requests_total{reason="queue_rows"} 1.0' in metrics

    serve(predictor, scenario, model_name="sum", max_queue_rows=1)
