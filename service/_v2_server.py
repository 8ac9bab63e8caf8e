"""The Open Inference Protocol's ``/v2`` routes as one ASGI handler: routing, readiness answers,
the inference (into the service's batcher) and errors as ``{"error": ...}``. The request and
response formats are :mod:`service._v2`'s pure functions."""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from starlette.types import Receive, Scope, Send

from service._admission import request_timeout
from service._batcher import NoReplica
from service._http import DISCONNECT_HOOK
from service._inputs import BadRequest
from service._v2 import (
    EXTENSIONS,
    MODEL_VERSION,
    RETRY_AFTER_S,
    ROUTES,
    SERVER_NAME,
    InferRequest,
    ModelSpec,
    V2Error,
    encode_response,
    match_route,
    parse_infer,
)
from service._v2_objects import object_outputs

__all__ = ["Authorize", "ReadBody", "Serving", "V2Server"]

_JSON = b"application/json"
_BINARY = b"application/octet-stream"
_HEADER_LENGTH = b"inference-header-content-length"


class Serving(Protocol):
    """What the protocol needs of the service: its state, the model and the batcher."""

    @property
    def status(self) -> str: ...  # starting | ready | failed

    @property
    def reason(self) -> str: ...

    @property
    def model(self) -> ModelSpec | None: ...  # set once ready

    @property
    def timeout(self) -> float | None: ...  # the default deadline (REQUEST_TIMEOUT_SECONDS)

    def infer(self, values: Any, rows: int, timeout: float | None, receive: Receive | None,
              on_disconnect: Callable[[Callable[[], None]], None] | None
              ) -> Awaitable[Mapping[str, Sequence[Any]]]:
        """Into the queue, with a deadline of ``timeout`` s; a client that disconnects (the
        server's ``on_disconnect`` hook, else ``receive``) takes the request out of it."""
        ...

    def infer_items(self, items: list[Any], costs: Sequence[int] | None, timeout: float | None,
                    receive: Receive | None,
                    on_disconnect: Callable[[Callable[[], None]], None] | None
                    ) -> Awaitable[list[Any]]:
        """An object predictor's items into the queue, as :meth:`infer`: one output each."""
        ...

    def failure(self, error: Exception) -> tuple[int, str, int | None]: ...  # as /predict's


ReadBody = Callable[[Scope, Receive], Awaitable["bytes | None"]]  # None: the client left
# A hook for access control on the inference routes: None to go on, or the answer to send.
Authorize = Callable[[Scope], "V2Error | None"]


_INFER, _VERSION_INFER = "infer", "version_infer"
_GENERATE = frozenset(("generate", "generate_stream", "version_generate",
                       "version_generate_stream"))


class Generate(Protocol):
    """Triton's generate extension (``service._v2_generate``): answers the request itself."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send, body: bytes,
                       stream_events: bool) -> None: ...


@dataclass(frozen=True)
class _Route:
    path: str  # the template: what the metrics label a request with (scope["route"].path)


@dataclass(eq=False)
class V2Server:
    """The ``/v2`` routes as one ASGI handler (called with the service's body reader)."""

    serving: Serving
    model_name: str
    server_version: str
    max_rows: int
    max_body_bytes: int
    authorize: Authorize | None = None
    generate: Generate | None = None  # set by the app: its streaming front-end
    version: str = field(default=MODEL_VERSION, init=False)
    routes: dict[str, _Route] = field(init=False, default_factory=lambda: {
        action: _Route(path) for action, path in ROUTES.items()})
    # at most len(ROUTES) paths: only ones that matched
    _known: dict[str, str] = field(init=False, default_factory=dict)

    async def __call__(self, scope: Scope, receive: Receive, send: Send,
                       read_body: ReadBody, path: str) -> None:
        """Answer a request for ``path`` (``/v2...``, without the root path)."""
        method = scope["method"]
        head_only = method == "HEAD"
        headers: list[tuple[bytes, bytes]] = []
        try:
            action = self._known.get(path)  # this model's paths, matched once
            if action is None:
                matched = match_route(path)
                if matched is None:
                    raise V2Error(404, f"no such endpoint: {method} {path}")
                action, name, version = matched
                scope["route"] = self.routes[action]
                if name is not None:
                    self._check_model(name, version)
                self._known[path] = action
            else:
                scope["route"] = self.routes[action]
            if action in _GENERATE and self.generate is not None:
                if method != "POST":
                    raise V2Error(405, f"{method} is not allowed on {path}: use POST",
                                  [(b"allow", b"POST")])
                if self.authorize is not None and (denied := self.authorize(scope)):
                    raise denied
                body = await read_body(scope, receive)
                if body is not None:
                    await self.generate(scope, receive, send, body,
                                        action.endswith("_stream"))
                return
            if action == _INFER or action == _VERSION_INFER:
                if method != "POST":
                    raise V2Error(405, f"{method} is not allowed on {path}: use POST",
                                  [(b"allow", b"POST")])
                if self.authorize is not None and (denied := self.authorize(scope)):
                    raise denied
                timeout = request_timeout(scope["headers"], self.serving.timeout)
                body = await read_body(scope, receive)
                if body is None:
                    return
                # The batcher's future is awaited here, not in a helper coroutine: one frame
                # less to suspend and resume per request.
                model, request = self._request(scope, body)
                hook = scope.get("extensions", {}).get(DISCONNECT_HOOK)
                try:
                    if model.items:
                        outputs = await self.serving.infer_items(request.values, None, timeout,
                                                                 receive, hook)
                    else:
                        part = await self.serving.infer(request.values, request.rows, timeout,
                                                        receive, hook)
                except Exception as exc:  # noqa: BLE001 - sorted out by _failed
                    raise self._failed(exc) from None
                if model.items:
                    request, part = object_outputs(request, outputs)
                content, header_length = encode_response(model, request, part)
                headers.append((b"content-type", _BINARY if header_length else _JSON))
                if header_length is not None:
                    headers.append((_HEADER_LENGTH, b"%d" % header_length))
                status = 200
            elif method not in ("GET", "HEAD"):
                raise V2Error(405, f"{method} is not allowed on {path}: use GET",
                              [(b"allow", b"GET, HEAD")])
            else:
                status, answer = self._get(action)
                content = orjson.dumps(answer)
                headers.append((b"content-type", _JSON))
                if status == 503:
                    headers.append((b"retry-after", b"%d" % RETRY_AFTER_S))
        except BadRequest as exc:  # V2Error, or the front's: over MAX_BODY_BYTES, a bad timeout
            status, content = exc.status, orjson.dumps({"error": exc.message})
            headers = [(b"content-type", _JSON), *exc.headers]
        headers.append((b"content-length", b"%d" % len(content)))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head_only else content})

    def _check_model(self, name: str, version: str | None) -> None:
        if name != self.model_name:
            raise V2Error(404, f"unknown model {name!r}: this server serves "
                               f"{self.model_name!r}")
        if version is not None and version != self.version:
            raise V2Error(404, f"model {name!r} has no version {version!r}: its version is "
                               f"{self.version!r}")

    def _not_ready(self) -> V2Error:
        state, reason = self.serving.status, self.serving.reason
        why = f"{state}: {reason}" if reason else state
        return V2Error(503, f"model {self.model_name!r} is not ready ({why})",
                       [(b"retry-after", b"%d" % RETRY_AFTER_S)])

    def _get(self, action: str) -> tuple[int, dict[str, Any]]:
        state = self.serving.status
        if action == "server_metadata":
            return 200, {"name": SERVER_NAME, "version": self.server_version,
                         "extensions": list(EXTENSIONS)}
        if action == "live":
            return (503, {"live": False}) if state == "failed" else (200, {"live": True})
        if action == "ready":
            if state != "ready":
                return 503, {"ready": False, "error": self._not_ready().message}
            return 200, {"ready": True}
        if action.endswith("ready"):
            if state != "ready":
                return 503, {"name": self.model_name, "ready": False,
                             "error": self._not_ready().message}
            return 200, {"name": self.model_name, "ready": True}
        model = self.serving.model
        if model is None:
            raise self._not_ready()
        return 200, model.metadata()

    def _request(self, scope: Scope, body: bytes) -> tuple[ModelSpec, InferRequest]:
        """The inference request in ``body``, for the model (which must be ready)."""
        model = self.serving.model
        if model is None or self.serving.status != "ready":
            raise self._not_ready()
        headers = dict(scope["headers"])  # a repeated header: the last one counts
        header_length = headers.get(_HEADER_LENGTH)
        encoding = headers.get(b"content-encoding")
        if encoding is not None and encoding.lower() != b"identity":
            body = self._inflate(body, encoding.lower())
        return model, parse_infer(body, header_length, model, self.max_rows)

    def _failed(self, exc: Exception) -> V2Error:
        """The answer to a failed inference: /predict's (the service's ``failure``), but for
        a replica-less model, which names the model and says when to try again."""
        if isinstance(exc, NoReplica):
            return V2Error(503, f"model {self.model_name!r} is not ready: {exc.message}",
                           [(b"retry-after", b"%d" % RETRY_AFTER_S)])
        status, message, retry = self.serving.failure(exc)
        return V2Error(status, message, [] if retry is None else [
            (b"retry-after", b"%d" % max(1, retry))])

    def _inflate(self, body: bytes, encoding: bytes) -> bytes:
        """A gzip or deflate request body (tritonclient's request_compression_algorithm)."""
        wbits = {b"gzip": 16 + zlib.MAX_WBITS, b"deflate": zlib.MAX_WBITS}.get(encoding)
        if wbits is None:
            raise V2Error(400, f"Content-Encoding {encoding.decode('latin-1')!r} is not supported: send "
                               "gzip, deflate or an uncompressed body")
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(body, self.max_body_bytes + 1)
        except zlib.error as exc:
            raise V2Error(400, f"the body is not valid {encoding.decode('latin-1')} data: "
                               f"{exc}") from None
        if len(out) > self.max_body_bytes:
            raise V2Error(413, f"the decompressed body is over the limit of "
                               f"{self.max_body_bytes} bytes (MAX_BODY_BYTES)")
        return out
