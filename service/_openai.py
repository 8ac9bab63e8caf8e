"""``POST /v1/embeddings`` in OpenAI's shape, for an object predictor whose items are text and
whose outputs are float vectors (a thin front-end on :class:`service._core.Core`; ``decode`` is
not called: each input string is one item).

Request: ``input`` (a string or a list of strings), ``model`` (any name: this server serves one
model and answers with its name), ``encoding_format`` (``float``, the default, or ``base64``:
little-endian float32, what the ``openai`` client asks for), ``user`` (ignored); ``dimensions``
is refused (400): the model's vectors have the length they have. Response: ``object: "list"``,
``data[]`` (``object: "embedding"``, ``embedding``, ``index``), ``model``, and ``usage`` whose
``prompt_tokens`` and ``total_tokens`` are the items' ``cost`` (tokens, for a text model).
Errors are OpenAI's ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

import orjson
from starlette.types import Receive

from service._core import Core, OnDisconnect
from service._inputs import BadRequest, decode_json, json_kind

__all__ = ["EMBEDDINGS_PATH", "EmbeddingsFront", "embeddings_openapi", "embeddings_response",
           "openai_error", "parse_embeddings"]

EMBEDDINGS_PATH = "/v1/embeddings"
Headers = list[tuple[bytes, bytes]]
_FORMATS = ("float", "base64")


def openai_error(status: int, message: str, param: str | None = None) -> bytes:
    """OpenAI's error object (/v1/embeddings, /v1/completions)."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    return orjson.dumps({"error": {"message": message, "type": kind, "param": param,
                                   "code": None}})


def parse_embeddings(payload: Any, max_items: int) -> tuple[list[str], str]:
    """The texts and the encoding format of an embeddings request; BadRequest otherwise."""
    if type(payload) is not dict:
        raise BadRequest(400, f"the body must be a JSON object like {{\"input\": \"a text\", "
                              f"\"model\": \"...\"}}, got {json_kind(payload)}")
    if "input" not in payload:
        raise BadRequest(400, "'input' is missing: send a string or a list of strings")
    texts = payload["input"]
    if type(texts) is str:
        texts = [texts]
    elif type(texts) is not list:
        raise BadRequest(400, f"'input' must be a string or a list of strings, got "
                              f"{json_kind(texts)}")
    if not texts:
        raise BadRequest(400, "'input' is an empty list: send at least one string")
    if len(texts) > max_items:
        raise BadRequest(413, f"'input' has {len(texts)} strings, over the limit of "
                              f"{max_items} per request (MAX_REQUEST_ROWS): split it")
    for i, text in enumerate(texts):
        if type(text) is not str:
            hint = " (token arrays are not supported: send the text)" if type(text) in (
                int, list) else ""
            raise BadRequest(400, f"'input' item {i} must be a string, got "
                                  f"{json_kind(text)}{hint}")
    model = payload.get("model")
    if model is not None and type(model) is not str:
        raise BadRequest(400, f"'model' must be a string, got {json_kind(model)}")
    fmt = payload.get("encoding_format")
    if fmt is None:
        fmt = "float"
    if fmt not in _FORMATS:
        raise BadRequest(400, f"'encoding_format' has value {fmt!r}: use 'float' or 'base64'")
    if payload.get("dimensions") is not None:
        raise BadRequest(400, "'dimensions' is not supported: this model's embeddings have "
                              "the length it makes; leave 'dimensions' out")
    return texts, fmt


def embeddings_response(outputs: list[Any], fmt: str, model: str, tokens: int) -> bytes:
    """OpenAI's response for these vectors; ValueError when they are not float vectors."""
    data = []
    for index, vector in enumerate(outputs):
        if type(vector) is not list or not vector or not all(
                type(v) is float or type(v) is int for v in vector):
            raise ValueError(f"output {index} is not a list of floats: /v1/embeddings serves "
                             "a predictor whose outputs are float vectors")
        embedding: Any = vector
        if fmt == "base64":
            embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "embedding": embedding, "index": index})
    return orjson.dumps({"object": "list", "data": data, "model": model,
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


class EmbeddingsFront:
    def __init__(self, core: Core) -> None:
        self.core = core

    async def answer(self, body: bytes, timeout: float | None, receive: Receive | None = None,
                     on_disconnect: OnDisconnect | None = None) -> tuple[int, bytes, Headers]:
        core = self.core
        state = core.status
        if state != "ready":
            return 503, openai_error(503, f"model is not ready ({state})"), [
                (b"retry-after", b"1")]
        if not core.objects:
            return 404, openai_error(404, f"{EMBEDDINGS_PATH} serves an object predictor of "
                                          "texts; this model takes float rows: use POST "
                                          "/predict"), []
        try:
            texts, fmt = parse_embeddings(decode_json(body), core.settings.max_request_rows)
            costs = [core.cost(text) for text in texts]
            outputs = await core.infer_items(texts, costs, timeout, receive, on_disconnect)
            return 200, embeddings_response(outputs, fmt, core.model_name, sum(costs)), []
        except BadRequest as exc:
            return exc.status, openai_error(exc.status, exc.message), []
        except Exception as exc:  # noqa: BLE001 - sorted out by failure
            status, message, retry = core.failure(exc)
            return status, openai_error(status, message), [] if retry is None else [
                (b"retry-after", b"%d" % retry)]


def embeddings_openapi() -> dict[str, Any]:
    """The OpenAPI entry of ``POST /v1/embeddings`` (the lean path answers it, not FastAPI)."""
    error = {"description": "OpenAI's error: {\"error\": {\"message\": ...}}"}
    return {"post": {
        "summary": "Embeddings, OpenAI's API (an object predictor of texts)",
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"type": "object", "required": ["input"], "properties": {
                "input": {"oneOf": [{"type": "string"},
                                    {"type": "array", "items": {"type": "string"}}]},
                "model": {"type": "string"},
                "encoding_format": {"type": "string", "enum": list(_FORMATS)}}},
            "example": {"input": ["a sentence"], "model": "any"}}}},
        "responses": {"200": {"description": "object: list; data[]: embedding, index; model; "
                                             "usage"},
                      "400": error, "404": error, "413": error, "503": error}}}
