"""``create_app(predictor, settings, registry)``: the HTTP service around the model's replicas.

One core (:mod:`service._core`: replicas, admission, the queue and its batcher) under three thin
protocol front-ends, each its own module: ``POST /predict`` (:mod:`service._predict`), the Open
Inference Protocol's ``/v2`` (:mod:`service._v2_server`) and OpenAI's ``POST /v1/embeddings``
(:mod:`service._openai`). They are answered by a lean ASGI path in front of FastAPI (orjson in
and out, no per-request pydantic); FastAPI declares /predict, so ``/docs`` describes it, and
serves the rest. Every request the ``/predict`` route matches (behind a root path too) takes
that one path; the OpenAPI entries of /v2 and /v1 are written by hand.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, Field
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from service._admission import Disconnected, request_timeout
from service._completions import COMPLETIONS_PATH, Completions, completions_openapi
from service._core import Core, PredictorSource
from service._drain import Drain
from service._http import DISCONNECT_HOOK
from service._inputs import BadRequest
from service._metrics import ServiceMetrics
from service._openai import EMBEDDINGS_PATH, EmbeddingsFront, embeddings_openapi, openai_error
from service._predict import Headers, PredictFront, about_body, detail, request_schema
from service._replicas import Runtime
from service._settings import Settings
from service._sse import StreamFront, respond_json, wants_events
from service._v2 import V2Error
from service._v2_generate import Generate
from service._v2_openapi import TIMEOUT_PARAMETER, openapi_paths
from service._v2_server import V2Server
from service.nvml import load_nvml

__all__ = ["PredictorSource", "create_app"]

# What the metrics record for a request whose client left before its answer (nginx's code).
CLIENT_CLOSED = Disconnected.status  # 499


class PredictResponse(BaseModel):
    predictions: list[Any] = Field(description="one per input row, in order: the argmax class")
    scores: list[list[float]] = Field(
        description="one per input row: the softmax over the model's K outputs")


class ErrorResponse(BaseModel):
    detail: str = Field(description="what was wrong with the request")


class _Fronts:
    """ASGI: the bearer token on every POST (``API_TOKEN``); what the ``/predict`` route
    matches straight to its front-end, ``/v1/embeddings`` to its own; ``/v2`` to its server;
    the rest to FastAPI."""

    def __init__(self, app: ASGIApp, core: Core, route: BaseRoute, v2: V2Server,
                 streams: StreamFront) -> None:
        self.app = app
        self.core = core
        self.predict = PredictFront(core)
        self.embeddings = EmbeddingsFront(core)
        self.completions = Completions(streams)
        self.streams = streams
        self.route = route
        self.v2 = v2
        self.limit = core.settings.max_body_bytes
        self.token = core.settings.api_token.encode()
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
        if predict:
            scope["route"] = self.route  # what the metrics label the request with
        elif path in _V1_ROUTES:
            scope["route"] = _V1_ROUTES[path]
        refused = self._unauthorized(scope) if self.token else None
        if refused is not None:  # before the body is read: no work for a stranger
            await respond_json(send, 401, detail(refused[0]), [(b"www-authenticate", refused[1])])
            return
        if path == COMPLETIONS_PATH or (predict and wants_events(scope["headers"])):
            await self._stream(scope, receive, send, predict)
            return
        if not predict and path != EMBEDDINGS_PATH:
            await self.app(scope, receive, send)
            return
        try:
            status, content, headers = await self.answer(scope, receive, predict)
        except _Disconnected:
            return
        await respond_json(send, status, content, headers)

    async def answer(self, scope: Scope, receive: Receive, predict: bool = True
                     ) -> tuple[int, bytes, Headers]:
        """The deadline and the body (at most MAX_BODY_BYTES) -> the front-end's status, JSON
        and headers; raises ``_Disconnected`` when the client left first."""
        try:
            timeout = request_timeout(scope["headers"], self.core.timeout)
            body = await self._body(scope, receive)
        except BadRequest as exc:
            return exc.status, (detail(exc.message) if predict else
                                openai_error(exc.status, exc.message)), []
        if body is None:
            raise _Disconnected
        hook = scope.get("extensions", {}).get(DISCONNECT_HOOK)
        if not predict:
            return await self.embeddings.answer(body, timeout, receive, hook)
        return await self.predict.answer(body, scope["headers"], timeout, receive, hook)

    async def _stream(self, scope: Scope, receive: Receive, send: Send, predict: bool) -> None:
        """A stream's front-end: /predict with Accept: text/event-stream, /v1/completions."""
        try:
            body = await self._body(scope, receive)
        except BadRequest as exc:
            await respond_json(send, exc.status, detail(exc.message) if predict else
                               openai_error(exc.status, exc.message), [])
            return
        if body is None:
            return
        if predict:
            await self.predict.events(body, scope, receive, send, self.streams)
        else:
            await self.completions(scope, receive, send, body)

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


class _Disconnected(Exception):
    pass


@dataclass(frozen=True)
class _Route:
    path: str  # what the metrics label its requests with (scope["route"].path)


_V1_ROUTES = {path: _Route(path) for path in (EMBEDDINGS_PATH, COMPLETIONS_PATH)}


def create_app(predictor: PredictorSource, settings: Settings, registry: CollectorRegistry,
               nvml_loader: Callable[[], Any] | None = load_nvml,
               runtime: Runtime | None = None, drain: Drain | None = None) -> ASGIApp:
    """The service as an ASGI app; the replicas load in the background after startup.

    ``predictor`` is one instance (one replica), or a class or function called once per replica
    (``DEVICE`` x ``REPLICAS_PER_DEVICE``); ``runtime`` defaults to torch's. ``drain`` (the
    server's) turns readiness to 503 once the server drains (SIGTERM).
    """
    metrics = ServiceMetrics(registry, nvml_loader)
    service = Core(predictor, settings, metrics, runtime)
    streams = StreamFront(service, drain)

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
        """What is served, so a client (``launcher up``'s example) can build a request that
        fits: ``kind`` (``tensor``, ``object``; null until it is loaded), a tensor model's
        ``input_width`` (values per row), an object predictor's ``example`` request body (null
        without one), the ``model`` info labels and ``max_request_rows``."""
        return Response(orjson.dumps(about_body(service)), media_type="application/json")

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
            (413, ("the body is over MAX_BODY_BYTES; an object predictor's request has more items "
                  "than MAX_REQUEST_ROWS or an item costlier than MAX_BATCH_COST")),
            (422, ("valid JSON but not a batch of rows of the model's width (an object "
                  "predictor: decode() found no items, or raised ValueError/TypeError/KeyError)")),
            (503, ("no replica is ready (still starting, or every one failed), the queue is "
                   "full (with Retry-After), or the batch ran out of device memory")),
            (504, "the request's deadline passed while it waited in the queue"))}
    errors[503]["headers"] = {"Retry-After": {
        "description": "when the queue is full: seconds until it is expected to have room",
        "schema": {"type": "integer", "minimum": 1}}}
    extra: dict[str, Any] = {
        "requestBody": {"required": True, "content": request_schema(service)},
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
            status, content, headers = await fronts.answer(request.scope, request.receive)
        except _Disconnected:
            return Response(status_code=CLIENT_CLOSED)  # nobody reads it
        return Response(content, status, media_type="application/json",
                        headers={k.decode(): v.decode() for k, v in headers})

    fastapi_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        schema = app.openapi_schema
        if schema is None:
            schema = fastapi_openapi()
            # the request body as the loaded predictor takes it: described again until then
            post = schema["paths"]["/predict"]["post"]
            post["requestBody"]["content"] = request_schema(service)
            if service.objects:  # its encode() decides the answer, not the tensor columns
                post["responses"]["200"]["content"]["application/json"]["schema"] = {
                    "description": "encode(outputs) of the predictor; without one "
                                   "{\"outputs\": [one output per item]}"}
            schema["paths"].update(openapi_paths(service.model_name))
            schema["paths"][EMBEDDINGS_PATH] = embeddings_openapi()
            schema["paths"][COMPLETIONS_PATH] = completions_openapi()
            if settings.api_token:
                schema.setdefault("components", {}).setdefault("securitySchemes", {})[
                    "bearer"] = {"type": "http", "scheme": "bearer"}
            app.openapi_schema = schema if service.status == "ready" else None
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    route = next(r for r in app.router.routes if getattr(r, "path", None) == "/predict")
    # API_TOKEN: _Fronts sets V2Server.authorize, which guards the /v2 inference routes.
    v2 = V2Server(service, service.model_name, app.version, settings.max_request_rows,
                  settings.max_body_bytes)
    v2.generate = Generate(streams, v2.version)
    fronts = _Fronts(app, service, route, v2, streams)
    return metrics.asgi(fronts)
