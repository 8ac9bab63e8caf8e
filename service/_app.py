"""``create_app(predictor, settings, registry)``: the HTTP service around the model's replicas.

``POST /predict`` is answered by a lean ASGI path in front of FastAPI (orjson in and out, no
per-request pydantic); FastAPI still declares it, so ``/docs`` describes it, and serves the rest.
Every request the ``/predict`` route matches (behind a root path too) takes that one path.
The Open Inference Protocol's ``/v2`` routes (:mod:`service._v2_server`) take the same lean path,
into the same batcher; their OpenAPI entries are written by hand.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import sys
from array import array
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, Field
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from service._admission import Admission, DeadlineExceeded, Disconnected, QueueFull, request_timeout
from service._batcher import Batcher, NoReplica, Ticket
from service._completions import PATH as COMPLETIONS
from service._completions import Completions
from service._cpu import cpu_threads
from service._device import NO_CUDA, plan_replicas
from service._drain import Drain
from service._http import DISCONNECT_HOOK
from service._inputs import BadRequest, check_rows, decode_json, inputs_of
from service._metrics import ServiceMetrics
from service._predictor import (
    HasDecode,
    HasEncode,
    HasOutputDatatypes,
    HasStream,
    OutOfMemory,
    Predictor,
    PredictorError,
    predictor_info,
)
from service._replicas import ReplicaPool, Runtime, load_runtime
from service._settings import Settings
from service._sse import StreamFront, data_event, respond_json, wants_events
from service._stream import ClientLeft, StreamCore
from service._tensors import TensorError
from service._v2 import ModelSpec, V2Error, default_model_name, describe_model
from service._v2_generate import Generate
from service._v2_openapi import TIMEOUT_PARAMETER, openapi_paths
from service._v2_server import V2Server
from service.nvml import load_nvml

__all__ = ["PredictorSource", "create_app"]

log = logging.getLogger("service")
Headers = list[tuple[bytes, bytes]]
# What the metrics record for a request whose client left before its answer (nginx's code).
CLIENT_CLOSED = Disconnected.status  # 499
# A predictor instance (it serves one replica), or a class / function that makes one per replica.
PredictorSource = Predictor | Callable[[], Predictor]


class PredictResponse(BaseModel):
    predictions: list[Any] = Field(description="one per input row, in order: the argmax class")
    scores: list[list[float]] = Field(
        description="one per input row: the softmax over the model's K outputs")


class ErrorResponse(BaseModel):
    detail: str = Field(description="what was wrong with the request")


class _Service:
    def __init__(self, predictor: PredictorSource, settings: Settings, metrics: ServiceMetrics,
                 runtime: Runtime | None, drain: Drain | None = None) -> None:
        self.make_predictor, self.one_instance = _factory(predictor)
        self.settings = settings
        self.metrics = metrics
        self.runtime = runtime
        self.replicas: ReplicaPool | None = None  # planned once torch has said what it sees
        self.batcher: Batcher | None = None  # made when the first replica is ready
        # the hooks of the first replica's predictor (a class has only unbound ones)
        self._decode: Callable[[Any], Any] | None = None
        self._encode: Callable[[Any], Any] | None = None
        self.model_name = default_model_name(settings.model_name, settings.predictor,
                                             settings.model_path)
        self.model: ModelSpec | None = None  # the /v2 metadata, from a warm-up's outputs
        self.timeout = settings.request_timeout_seconds or None  # the default deadline
        self.streams = StreamCore(settings.max_streams, metrics.stream_opened,
                                  metrics.stream_ended, metrics.stream_cancelled,
                                  lambda: drain is not None and drain.draining)
        self.stream_front = StreamFront(self.streams, metrics, self.failure)
        if drain is not None:
            drain.on_end(self.streams.stop)

    def describe(self, predictor: Predictor, width: int,
                 outputs: Mapping[str, Sequence[Any]]) -> None:
        """In a replica's thread, after its warm-up: the model's /v2 metadata (the first one)."""
        info = predictor_info(predictor)
        datatypes = (predictor.output_datatypes if isinstance(predictor, HasOutputDatatypes)
                     else None)
        try:
            model = describe_model(self.model_name, info, width, outputs, datatypes)
        except TensorError as exc:
            raise PredictorError(f"output_datatypes: {exc.message}",
                                 "map each output name to a datatype, e.g. 'FP32'") from None
        if self.model is None:
            self.model = model

    @property
    def reason(self) -> str:
        return self.replicas.reason() if self.replicas is not None else ""

    def infer(self, values: array[float], rows: int, timeout: float | None,
              receive: Receive | None = None,
              on_disconnect: Callable[[Callable[[], None]], None] | None = None
              ) -> Awaitable[dict[str, list[Any]]]:
        """Rows into the batcher (the /v2 path; ``predict`` is /predict's)."""
        assert self.batcher is not None  # the ticket's future: no coroutine around it
        return self._enqueue(self.batcher, values, rows, timeout, receive, on_disconnect).future

    def failure(self, error: Exception) -> tuple[int, str, int | None]:
        """The answer to a request that did not get its outputs, for /predict and /v2 alike:
        status, message and Retry-After seconds (or None). Counts a request the queue refused
        or dropped (predictor_rejected_requests_total) and logs the model's failures."""
        if isinstance(error, (QueueFull, DeadlineExceeded, Disconnected, OutOfMemory)):
            self.metrics.reject(error.reason)
        if isinstance(error, QueueFull):
            return 503, error.message, error.retry_after
        if isinstance(error, (DeadlineExceeded, Disconnected)):  # 504, or 499 (nobody reads it)
            return error.status, error.message, None
        if isinstance(error, OutOfMemory):
            log.error("inference failed: %s", error.message)
            return 503, f"inference failed: {error.message}; {error.hint}", None
        if isinstance(error, NoReplica):  # the device failed, not the request: try again later
            return 503, f"model is not ready: {error.message}", None
        log.exception("inference failed", exc_info=error)  # the model's (or encode hook's)
        return 500, f"inference failed: {type(error).__name__}: {error}", None

    @staticmethod
    def _enqueue(batcher: Batcher, values: array[float], rows: int, timeout: float | None,
                 receive: Receive | None,
                 on_disconnect: Callable[[Callable[[], None]], None] | None) -> Ticket:
        """Queue the rows; a client that disconnects takes them out of the queue: told by the
        server's ``on_disconnect`` hook where it has one (ours), else by ``receive`` (after
        the body, its next message is the disconnect). Raises :class:`QueueFull`."""
        ticket = batcher.enqueue(values, rows, timeout)
        if on_disconnect is not None:
            on_disconnect(partial(batcher.withdraw, ticket))
        elif receive is not None:
            watcher = asyncio.ensure_future(_watch(receive, batcher, ticket))
            ticket.future.add_done_callback(lambda _: watcher.cancel())
        return ticket

    async def start(self) -> None:
        """Plan the replicas from DEVICE and what torch sees, then set them all up."""
        loop = asyncio.get_running_loop()
        s = self.settings
        runtime = self.runtime
        if runtime is None:  # imports torch: off the event loop
            runtime = await loop.run_in_executor(None, load_runtime)
        facts = NO_CUDA if set(s.devices) == {"cpu"} else await loop.run_in_executor(
            None, runtime.cuda_facts)
        per_device = 1 if s.replicas_per_device is None and self.one_instance else (
            s.replicas_per_device)  # auto, but one instance serves one replica
        threads = cpu_threads()
        slots, fallbacks = plan_replicas(s.devices, per_device, facts, threads)
        for reason in dict.fromkeys(fallbacks):
            log.warning("DEVICE=auto: running on the CPU because %s", reason)
        cpu = sum(1 for slot in slots if slot.device == "cpu" and slot.error is None)
        if per_device is None and cpu > 1:
            log.info("REPLICAS_PER_DEVICE=auto: %d CPU replicas for %d CPU thread(s), each "
                     "holding the model (REPLICAS_PER_DEVICE=1: one with every thread)",
                     cpu, threads)
        self.replicas = ReplicaPool(slots, self.make_predictor, runtime, threads,
                                    s.input_width, s.max_batch_rows, self._changed,
                                    on_warmup=self.describe)
        self._changed()
        await self.replicas.start()

    def _changed(self) -> None:
        """A replica changed state: metrics, the batcher once one is ready, and its wake-up."""
        replicas = self.replicas
        assert replicas is not None
        self.metrics.set_replicas(replicas.counts())
        if self.batcher is None and replicas.width is not None:
            s = self.settings
            first = replicas.first
            self._decode = first.decode if isinstance(first, HasDecode) else None
            self._encode = first.encode if isinstance(first, HasEncode) else None
            admission = Admission(s.max_queue_rows, s.max_queue_seconds, s.max_batch_rows)
            self.batcher = Batcher(replicas, replicas.width, s.max_batch_rows,
                                   s.max_wait_ms / 1000, self.metrics.observe_batch, admission,
                                   _torch_oom)
            batcher = self.batcher
            self.metrics.watch_queue(lambda: batcher.queued_rows)
            log.info("ready: %s, input width %d", replicas.info or "predictor", replicas.width)
        devices = replicas.ready_devices()
        if devices:
            info = dict(replicas.info)
            if "device" in info:  # every device a replica is ready on, not only the first's
                info["device"] = ",".join(devices)
            self.metrics.set_model_info(**info)
        if self.batcher is not None:
            self.batcher.wake()

    @property
    def status(self) -> str:
        """starting, ready or failed: for /readyz, /predict and the /v2 routes. Ready once a
        replica is, and then the batcher is made (in the same ``_changed()`` call)."""
        return "starting" if self.replicas is None else self.replicas.status

    def health(self) -> dict[str, Any]:
        """``/readyz`` and ``/healthz``: the service's status, and each replica's."""
        replicas = self.replicas
        body: dict[str, Any] = {"status": self.status,
                                "replicas": [] if replicas is None else replicas.health()}
        if replicas is not None and body["status"] == "failed":
            body["reason"] = replicas.reason()
        return body

    def shutdown(self) -> None:
        if self.replicas is not None:
            self.replicas.shutdown()

    async def predict(self, body: bytes, timeout: float | None = None,
                      receive: Receive | None = None,
                      on_disconnect: Callable[[Callable[[], None]], None] | None = None
                      ) -> tuple[int, bytes, Headers]:
        """Status, JSON body and extra headers (a client that disconnects takes its request
        out of the queue: :meth:`_enqueue`)."""
        state, batcher = self.status, self.batcher
        if state != "ready":
            return 503, _detail(f"model is not ready ({state})"), []
        assert batcher is not None  # made when the first replica got ready
        try:
            payload = decode_json(body)
            inputs = self._decoded(payload) if self._decode else inputs_of(payload)
            values = check_rows(inputs, batcher.width, self.settings.max_request_rows,
                                b"true" in body or b"false" in body or self._decode is not None)
        except BadRequest as exc:
            return exc.status, _detail(exc.message), []
        try:
            ticket = self._enqueue(batcher, values, len(values) // batcher.width, timeout,
                                   receive, on_disconnect)
            outputs = await ticket.future
            return 200, orjson.dumps(self._encode(outputs) if self._encode else outputs), []
        except Exception as exc:  # noqa: BLE001 - sorted out by failure
            status, message, retry = self.failure(exc)
            return status, _detail(message), [] if retry is None else [
                (b"retry-after", b"%d" % retry)]

    def streaming(self, hint: str = "") -> ReplicaPool:
        """The replicas, when the service is ready and its predictor streams; else the plain
        answer's BadRequest (503 not ready, 406 no ``stream``, with ``hint``)."""
        replicas = self.replicas
        if self.status != "ready" or replicas is None:
            raise BadRequest(503, f"model is not ready ({self.status})")
        if not isinstance(replicas.first, HasStream):
            raise BadRequest(406, "this model does not stream: its predictor has no stream() "
                                  "method" + hint)
        return replicas

    async def predict_events(self, body: bytes, scope: Scope, receive: Receive,
                             send: Send) -> None:
        """``/predict`` with ``Accept: text/event-stream``: the one item of the body, streamed."""
        front = self.stream_front
        try:
            replicas = self.streaming("; send the request without Accept: text/event-stream")
            payload = decode_json(body)
            items = self._decoded(payload) if self._decode else inputs_of(payload)
            if type(items) is not list or len(items) != 1:
                count = len(items) if type(items) is list else 0
                raise BadRequest(422, f"a stream takes one item: this request has {count}; "
                                      "send one per request, or leave out Accept: "
                                      "text/event-stream for a batch")
            stream = front.open(replicas, items[0], scope, receive)
            first = await front.first(stream)
        except ClientLeft:
            return
        except Exception as exc:  # noqa: BLE001 - the plain answer, before any event
            status, message, headers = front.failure(exc)
            await respond_json(send, status, _detail(message), headers)
            return
        await front.send_events(send, stream, first, data_event)

    def _decoded(self, payload: Any) -> Any:
        """A decode hook's rows; its ValueError/TypeError/KeyError is the client's mistake."""
        assert self._decode is not None
        try:
            return self._decode(payload)
        except ValueError as exc:
            raise BadRequest(422, str(exc)) from None
        except (TypeError, KeyError) as exc:
            raise BadRequest(422, f"the body does not fit this model: {type(exc).__name__}: "
                                  f"{exc}") from None


def _detail(message: str) -> bytes:
    return orjson.dumps({"detail": message})


async def _watch(receive: Receive, batcher: Batcher, ticket: Ticket) -> None:
    """Once the body is read, the next message is ``http.disconnect``: the client left."""
    if (await receive())["type"] == "http.disconnect":
        batcher.withdraw(ticket)


def _torch_oom(error: BaseException) -> OutOfMemory | None:
    """torch's out-of-memory error as :class:`OutOfMemory` (torch is asked only when a
    predictor has loaded it: no other module raises torch's errors)."""
    if "torch" not in sys.modules:
        return None
    from service._torch import out_of_memory

    return out_of_memory(error)


class _PredictPath:
    """ASGI: the bearer token on every POST (``API_TOKEN``); what the ``/predict`` route
    matches straight to the service; ``/v2`` to its server; the rest to FastAPI."""

    def __init__(self, app: ASGIApp, service: _Service, route: BaseRoute, v2: V2Server) -> None:
        self.app = app
        self.service = service
        self.route = route
        self.v2 = v2
        self.limit = service.settings.max_body_bytes
        self.token = service.settings.api_token.encode()
        self.completions = Completions(service)
        self.completions_route = _Route(COMPLETIONS)
        if self.token:
            v2.authorize = self._v2_authorize

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" else ""
        root = scope.get("root_path")
        if root and path.startswith(root):
            path = path[len(root):]
        if path == "/v2" or path[:4] == "/v2/":
            await self.v2(scope, receive, send, self._body, path)  # guarded by authorize
            return
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        # The route's own matcher (root path, method) decides, so FastAPI's router never gets a
        # predict request; the endswith test keeps other paths off the regex.
        predict = (scope["path"].endswith("/predict")
                   and self.route.matches(scope)[0] is Match.FULL)
        completions = path == COMPLETIONS
        if predict:
            scope["route"] = self.route  # what the metrics label the request with
        elif completions:
            scope["route"] = self.completions_route
        refused = self._unauthorized(scope) if self.token else None
        if refused is not None:  # before the body is read: no work for a stranger
            await respond_json(send, 401, _detail(refused[0]), [(b"www-authenticate", refused[1])])
            return
        if completions:
            body = await self._read(scope, receive, send)
            if body is not None:
                await self.completions(scope, receive, send, body)
            return
        if not predict:
            await self.app(scope, receive, send)
            return
        if wants_events(scope["headers"]):
            await self.events(scope, receive, send)
            return
        try:
            status, content, headers = await self.answer(scope, receive)
        except _Disconnected:
            return
        await respond_json(send, status, content, headers)

    async def events(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A streamed /predict (``Accept: text/event-stream``): the body, then the stream."""
        body = await self._read(scope, receive, send)
        if body is not None:
            await self.service.predict_events(body, scope, receive, send)

    async def _read(self, scope: Scope, receive: Receive, send: Send) -> bytes | None:
        """The body for a stream's front-end; None when it was answered (413) or the client
        left."""
        try:
            return await self._body(scope, receive)
        except BadRequest as exc:
            await respond_json(send, exc.status, _detail(exc.message), [])
            return None

    async def answer(self, scope: Scope, receive: Receive) -> tuple[int, bytes, Headers]:
        """The deadline and the body (at most MAX_BODY_BYTES) -> the service's status, JSON and
        headers; raises ``_Disconnected`` when the client left first."""
        try:
            timeout = request_timeout(scope["headers"], self.service.timeout)
            body = await self._body(scope, receive)
        except BadRequest as exc:
            return exc.status, _detail(exc.message), []
        if body is None:
            raise _Disconnected
        hook = scope.get("extensions", {}).get(DISCONNECT_HOOK)
        return await self.service.predict(body, timeout, receive, hook)

    def _unauthorized(self, scope: Scope) -> tuple[str, bytes] | None:
        """None for the right bearer token (compared in constant time); else why, and the
        ``WWW-Authenticate`` challenge (RFC 6750)."""
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() != b"bearer" or not token.strip():
                    break
                if hmac.compare_digest(token.strip(), self.token):
                    return None
                return ("wrong bearer token in Authorization",
                        b'Bearer realm="predictor", error="invalid_token"')
        return ("missing bearer token: send the header Authorization: Bearer <API_TOKEN>",
                b'Bearer realm="predictor"')

    def _v2_authorize(self, scope: Scope) -> V2Error | None:
        refused = self._unauthorized(scope)
        if refused is None:
            return None
        return V2Error(401, refused[0], [(b"www-authenticate", refused[1])])

    async def _body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The body, at most MAX_BODY_BYTES (else BadRequest 413); None when the client left
        first (the /v2 server's reader as it is: no coroutine around it)."""
        for name, value in scope["headers"]:
            if name == b"content-length":
                if value.isdigit() and int(value) > self.limit:
                    raise BadRequest(413, f"body is {int(value)} bytes, over the limit of "
                                          f"{self.limit} bytes (MAX_BODY_BYTES)")
                break
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk: bytes = message.get("body", b"")
            if not message.get("more_body", False) and not chunks:
                if len(chunk) > self.limit:
                    break
                return chunk  # the common case: one chunk
            size += len(chunk)
            if size > self.limit:
                break
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
        raise BadRequest(413, f"body is over the limit of {self.limit} bytes (MAX_BODY_BYTES)")


@dataclass(frozen=True)
class _Route:
    path: str  # what the metrics label a request with (scope["route"].path)


class _Disconnected(Exception):
    pass


def _request_schema(settings: Settings) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["inputs"],
        "properties": {"inputs": {
            "type": "array", "minItems": 1, "maxItems": settings.max_request_rows,
            "description": "a batch of rows; every row has the model's input width (64 raw "
                           "0-16 pixels for the built-in digits model)",
            "items": {"type": "array", "items": {"type": "number"}},
        }},
        "example": {"inputs": [[0.0] * 64]},
    }


def _factory(source: PredictorSource) -> tuple[Callable[[], Predictor], bool]:
    """One new predictor per replica: a class or function is called; an instance serves one
    (True: it is an instance)."""
    if isinstance(source, type) or not callable(getattr(source, "predict", None)):
        return source, False  # type: ignore[return-value]
    instance: list[Predictor] = [source]  # type: ignore[list-item]

    def only_one() -> Predictor:
        if not instance:
            raise PredictorError("this service was given one predictor instance, which serves "
                                 "one replica", "pass create_app a class or a function that "
                                 "makes a new predictor, one per replica")
        return instance.pop()

    return only_one, True


def create_app(predictor: PredictorSource, settings: Settings, registry: CollectorRegistry,
               nvml_loader: Callable[[], Any] | None = load_nvml,
               runtime: Runtime | None = None, drain: Drain | None = None) -> ASGIApp:
    """The service as an ASGI app; the replicas load in the background after startup.

    ``predictor`` is one instance (one replica), or a class or function called once per replica
    (``DEVICE`` x ``REPLICAS_PER_DEVICE``); ``runtime`` defaults to torch's. ``drain`` (the
    server's) turns readiness to 503 once the server drains (SIGTERM).
    """
    metrics = ServiceMetrics(registry, nvml_loader)
    service = _Service(predictor, settings, metrics, runtime, drain)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        loading = asyncio.create_task(service.start())
        try:
            yield
        finally:
            loading.cancel()
            service.shutdown()  # in-flight work is done by now (uvicorn)

    app = FastAPI(title="predictor", version="0.1.0", lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> Response:
        """The process is alive (503 only when every replica failed); each replica's state."""
        body = service.health()
        failed = body["status"] == "failed"
        if not failed:
            body["status"] = "ok"
        return Response(orjson.dumps(body), 503 if failed else 200, media_type="application/json")

    @app.get("/readyz")
    async def readyz() -> Response:
        """200 once a replica is loaded and warmed up; 503 while starting, when all failed and
        while draining for shutdown."""
        body = service.health()
        if drain is not None and drain.draining:
            body["status"] = "draining"
        status = 200 if body["status"] == "ready" else 503
        return Response(orjson.dumps(body), status, media_type="application/json")

    @app.get("/")
    async def about() -> Response:
        """What is served: the model's ``input_width`` (values per row; null until it is loaded)
        and ``model`` info labels, so a client (``launcher up``'s example) can build a request
        that fits."""
        replicas = service.replicas
        body = {"service": "gpu-launcher",
                "input_width": replicas.width if replicas is not None else None,
                "model": dict(replicas.info) if replicas is not None else {},
                "max_request_rows": settings.max_request_rows}
        return Response(orjson.dumps(body), media_type="application/json")

    # Load balancers and some probes send HEAD: answer it, without a second OpenAPI operation.
    for path, probe in (("/healthz", healthz), ("/readyz", readyz)):
        app.add_api_route(path, probe, methods=["HEAD"], include_in_schema=False)

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        """Sync on purpose: FastAPI runs it in a worker thread, so NVML calls at scrape time never
        stall the event loop (and the batcher on it)."""
        body, content_type = metrics.render()
        return Response(body, headers={"content-type": content_type})

    errors: dict[int | str, dict[str, Any]] = {
        code: {"model": ErrorResponse, "description": what} for code, what in (
            (400, "the body is not JSON, or X-Request-Timeout is not a number of seconds"),
            (401, "API_TOKEN is set and the bearer token is missing or wrong"),
            (413, "the body is over MAX_BODY_BYTES"),
            (422, "valid JSON but not a batch of rows of the model's width"),
            (503, ("no replica is ready (still starting, or every one failed), the queue is "
                   "full (with Retry-After), or the batch ran out of device memory")),
            (504, "the request's deadline passed while it waited in the queue"))}
    errors[503]["headers"] = {"Retry-After": {
        "description": "when the queue is full: seconds until it is expected to have room",
        "schema": {"type": "integer", "minimum": 1}}}
    extra: dict[str, Any] = {
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": _request_schema(settings)}}},
        "parameters": [TIMEOUT_PARAMETER],
    }
    if settings.api_token:
        extra["security"] = [{"bearer": []}]

    @app.post("/predict", response_model=PredictResponse, responses=errors,
              openapi_extra=extra)
    async def predict(request: Request) -> Response:
        """Predict a batch: ``{"inputs": [[...], ...]}`` -> one prediction and score row each.

        Concurrent requests are merged into one forward pass (dynamic batching)."""
        # The front answers whatever this route matches; should a request get here anyway, it
        # gets the same answer and the same body limit.
        try:
            status, content, headers = await front.answer(request.scope, request.receive)
        except _Disconnected:
            return Response(status_code=CLIENT_CLOSED)  # nobody reads it
        return Response(content, status, media_type="application/json",
                        headers={k.decode(): v.decode() for k, v in headers})

    fastapi_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = fastapi_openapi()
            schema["paths"].update(openapi_paths(service.model_name))
            if settings.api_token:
                schema.setdefault("components", {}).setdefault("securitySchemes", {})[
                    "bearer"] = {"type": "http", "scheme": "bearer"}
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
    route = next(r for r in app.router.routes if getattr(r, "path", None) == "/predict")
    # API_TOKEN: _PredictPath sets V2Server.authorize, which guards the /v2 inference routes.
    v2 = V2Server(service, service.model_name, app.version, settings.max_request_rows,
                  settings.max_body_bytes)
    v2.generate = Generate(service, v2.version)
    front = _PredictPath(app, service, route, v2)
    return metrics.asgi(front)
