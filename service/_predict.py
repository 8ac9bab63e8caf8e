"""``POST /predict``, the service's own protocol, for both kinds of predictor (a thin front-end
on :class:`service._core.Core`):

- a tensor predictor: ``{"inputs": [[...], ...]}`` (or what its ``decode`` hook turns into such
  rows) -> the columns (or its ``encode`` hook's answer);
- an object predictor: ``decode(payload)`` -> items (``payload`` is the parsed JSON body; the
  raw bytes for a body whose Content-Type is not JSON) -> their outputs -> ``encode(outputs)``,
  by default ``{"outputs": [...]}``;
- with ``Accept: text/event-stream``, a request of one item streamed as Server-Sent Events
  (an object predictor with ``stream``: :mod:`service._sse`).
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

from service._core import Core, OnDisconnect
from service._inputs import BadRequest, check_rows, decode_json, inputs_of
from service._predictor import HasExample, InputError
from service._sse import StreamFront, data_event, respond_json
from service._stream import ClientLeft

__all__ = ["Headers", "PredictFront", "about_body", "detail", "is_json", "request_schema"]

log = logging.getLogger("service")
Headers = list[tuple[bytes, bytes]]
# curl -d sends form-urlencoded: its body is the JSON a user typed, as every example spells it.
_JSON_TYPES = (b"application/json", b"application/x-www-form-urlencoded", b"text/json")


def detail(message: str) -> bytes:
    return orjson.dumps({"detail": message})


def is_json(content_type: bytes | None) -> bool:
    """Whether a body of this Content-Type is JSON: no type, JSON (``+json`` too) or curl's
    ``-d`` default; anything else (``image/png``, ``application/octet-stream``) is bytes."""
    if not content_type:
        return True
    kind = content_type.partition(b";")[0].strip().lower()
    return kind in _JSON_TYPES or kind.endswith(b"+json")


class PredictFront:
    def __init__(self, core: Core) -> None:
        self.core = core
        self.max_rows = core.settings.max_request_rows

    async def answer(self, body: bytes, headers: Headers, timeout: float | None,
                     receive: Receive | None = None, on_disconnect: OnDisconnect | None = None
                     ) -> tuple[int, bytes, Headers]:
        """Status, JSON body and extra headers (a client that disconnects takes its request
        out of the queue); ``headers`` are the request's (its Content-Type)."""
        core = self.core
        state = core.status
        if state != "ready":
            return 503, detail(f"model is not ready ({state})"), []
        encode = core.encode
        try:
            if core.objects:
                items = self._items(body, _content_type(headers))
                outputs: Any = await core.infer_items(items, None, timeout, receive,
                                                      on_disconnect)
                return 200, orjson.dumps(encode(outputs) if encode else {"outputs": outputs}), []
            width = core.replicas.width  # type: ignore[union-attr]
            assert width is not None
            payload = decode_json(body)
            decode = core.decode
            inputs = _decoded(decode, payload) if decode else inputs_of(payload)
            values = check_rows(inputs, width, self.max_rows,
                                b"true" in body or b"false" in body or decode is not None)
            outputs = await core.infer(values, len(values) // width, timeout, receive,
                                       on_disconnect)
            return 200, orjson.dumps(encode(outputs) if encode else outputs), []
        except BadRequest as exc:
            return exc.status, detail(exc.message), []
        except Exception as exc:  # noqa: BLE001 - sorted out by failure
            status, message, retry = core.failure(exc)
            return status, detail(message), [] if retry is None else [
                (b"retry-after", b"%d" % retry)]

    async def events(self, body: bytes, scope: Scope, receive: Receive, send: Send,
                     streams: StreamFront) -> None:
        """``Accept: text/event-stream``: the request's one item, streamed (``stream(item)``),
        each chunk one ``data:`` event, then ``data: [DONE]``; before the first chunk an error
        is the plain answer."""
        try:
            replicas = streams.streaming("; send the request without Accept: text/event-stream")
            items = self._items(body, _content_type(scope["headers"]))
            if len(items) != 1:
                raise BadRequest(422, f"a stream takes one item: this request has {len(items)}; "
                                      "send one per request, or leave out Accept: "
                                      "text/event-stream for a batch")
            stream = streams.open(replicas, items[0], scope, receive)
            first = await streams.first(stream)
        except ClientLeft:
            return
        except Exception as exc:  # noqa: BLE001 - the plain answer, before any event
            status, message, headers = streams.failure(exc)
            await respond_json(send, status, detail(message), headers)
            return
        await streams.send_events(send, stream, first, data_event)

    def _items(self, body: bytes, content_type: bytes | None) -> list[Any]:
        """An object predictor's items from the body: JSON parsed (else the bytes), then its
        ``decode``."""
        payload = decode_json(body) if is_json(content_type) else body
        items = _decoded(self.core.decode, payload)
        if type(items) is not list:
            raise TypeError(f"decode() returned {type(items).__name__}: expected a list of "
                            "items")
        if not items:
            raise BadRequest(422, "the request has no items: send at least one")
        if len(items) > self.max_rows:
            raise BadRequest(413, f"the request has {len(items)} items, over the limit of "
                                  f"{self.max_rows} per request (MAX_REQUEST_ROWS): split it")
        return items


def _content_type(headers: Headers) -> bytes | None:
    for name, value in headers:
        if name == b"content-type":
            return value
    return None


def _decoded(decode: Any, payload: Any) -> Any:
    """A decode hook's rows or items; its InputError is a 400 with its message, its
    ValueError/TypeError/KeyError the client's mistake too (422)."""
    try:
        return decode(payload)
    except InputError as exc:
        raise BadRequest(400, exc.message) from None
    except ValueError as exc:
        raise BadRequest(422, str(exc)) from None
    except (TypeError, KeyError) as exc:
        raise BadRequest(422, f"the body does not fit this model: {type(exc).__name__}: "
                              f"{exc}") from None


def request_schema(core: Core) -> dict[str, Any]:
    """/predict's request body in the OpenAPI document: rows of the model's width, or an
    object predictor's ``example`` (any JSON; bytes of any other Content-Type)."""
    predictor = core.predictor
    if core.objects:
        example = predictor.example if isinstance(predictor, HasExample) else None
        content: dict[str, Any] = {"application/json": {"schema": {
            "description": "any JSON the predictor's decode() takes"}}}
        if example is not None and not isinstance(example, bytes):
            content["application/json"]["example"] = example
        content["application/octet-stream"] = {"schema": {"type": "string", "format": "binary",
                                                          "description": "raw bytes (an image, "
                                                          "audio) for decode(bytes)"}}
        return content
    return {"application/json": {"schema": {
        "type": "object",
        "required": ["inputs"],
        "properties": {"inputs": {
            "type": "array", "minItems": 1, "maxItems": core.settings.max_request_rows,
            "description": "a batch of rows; every row has the model's input width (64 raw "
                           "0-16 pixels for the built-in digits model)",
            "items": {"type": "array", "items": {"type": "number"}},
        }},
        "example": {"inputs": [[0.0] * 64]},
    }}}


def about_body(core: Core) -> dict[str, Any]:
    """``GET /``: what is served, as each kind of predictor can say it."""
    replicas = core.replicas
    body: dict[str, Any] = {"service": "gpu-launcher",
                            "kind": None if core.predictor is None else (
                                "object" if core.objects else "tensor")}
    if core.objects:
        example = getattr(core.predictor, "example", None)
        body["example"] = None if isinstance(example, bytes) else example
    else:
        body["input_width"] = replicas.width if replicas is not None else None
    body["model"] = dict(replicas.info) if replicas is not None else {}
    body["max_request_rows"] = core.settings.max_request_rows
    return body
