"""``POST /v1/completions``, OpenAI's shape, over the stream core: ``prompt`` (with
``max_tokens``, ``temperature``, ``stop``) becomes a :class:`service.Prompt`; the predictor's
``stream`` yields text; the answer is ``choices[0].text`` in one piece, or with
``"stream": true`` one ``text_completion`` chunk per yielded piece, a last one with the
``finish_reason`` (and ``usage`` with ``stream_options.include_usage``), then ``data: [DONE]``.

Usage counts tokens as the predictor does: ``prompt_tokens`` is its ``cost(prompt)`` (1 without
one, as for /v1/embeddings), ``completion_tokens`` the chunks it yielded (one token each, for a token streamer).
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

from service._inputs import BadRequest, decode_json, json_kind
from service._openai import openai_error
from service._prompt import Prompt, prompt_of
from service._sse import StreamFront, respond_json
from service._stream import ClientLeft

__all__ = ["COMPLETIONS_PATH", "Completions", "completions_openapi", "parse_completion"]

COMPLETIONS_PATH = "/v1/completions"


@dataclass(frozen=True)
class CompletionRequest:
    prompt: Prompt
    stream: bool
    include_usage: bool


def _field(body: dict[str, Any], key: str, kinds: tuple[type, ...], what: str) -> Any:
    value = body.get(key)
    if value is not None and (type(value) not in kinds):
        raise BadRequest(400, f"'{key}' must be {what}, got {json_kind(value)}")
    return value


def parse_completion(payload: Any) -> CompletionRequest:
    """A completion request's body, or BadRequest (400) naming the field."""
    if type(payload) is not dict:
        raise BadRequest(400, f"body must be a JSON object with 'model' and 'prompt', got "
                              f"{json_kind(payload)}")
    prompt = payload.get("prompt")
    if type(prompt) is list and len(prompt) == 1:
        prompt = prompt[0]
    if type(prompt) is list and all(type(p) is str for p in prompt):
        raise BadRequest(400, f"'prompt' has {len(prompt)} prompts: this server completes one "
                              "per request")
    if type(prompt) is not str:
        raise BadRequest(400, f"'prompt' must be a string, got {json_kind(prompt)}")
    for key in ("n", "best_of"):
        count = payload.get(key)
        if count is not None and count != 1:
            raise BadRequest(400, f"'{key}' must be 1: this server makes one completion per "
                                  f"request, got {count!r}")
    stream = _field(payload, "stream", (bool,), "true or false") or False
    options = _field(payload, "stream_options", (dict,), "an object") or {}
    return CompletionRequest(prompt_of(prompt, payload, 2.0), stream,
                             bool(options.get("include_usage")))


class Completions:
    """The front-end: a request -> a stream of the core -> OpenAI's answer."""

    def __init__(self, front: StreamFront) -> None:
        self.front = front

    async def __call__(self, scope: Scope, receive: Receive, send: Send, body: bytes) -> None:
        front = self.front
        try:
            replicas = front.streaming()
            request = parse_completion(decode_json(body))
            stream = front.open(replicas, request.prompt, scope, receive)
            first = await front.first(stream)
            usage = _Usage(front.cost(request.prompt), request.prompt.max_tokens)
            if not request.stream:
                chunks = await front.collect(stream, first)
                for chunk in chunks:
                    usage.add(chunk)
        except ClientLeft:
            return
        except Exception as exc:  # noqa: BLE001 - OpenAI's error body
            status, message, headers = front.failure(exc)
            await respond_json(send, status, openai_error(status, message), headers)
            return
        head = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion",
                "created": int(time.time()), "model": front.model_name}
        if not request.stream:
            await respond_json(send, 200, orjson.dumps({**head, "choices": [
                {"text": "".join(chunks), "index": 0, "logprobs": None,
                 "finish_reason": usage.finish_reason}], "usage": usage.body()}), [])
            return

        def frame(chunk: Any) -> bytes:
            usage.add(chunk)
            return _event({**head, "choices": [{"text": chunk, "index": 0, "logprobs": None,
                                                "finish_reason": None}]})

        def done() -> bytes:
            last = _event({**head, "choices": [{"text": "", "index": 0, "logprobs": None,
                                                "finish_reason": usage.finish_reason}]})
            if request.include_usage:
                last += _event({**head, "choices": [], "usage": usage.body()})
            return last + b"data: [DONE]\n\n"

        await front.send_events(send, stream, first, frame, done, error_frame)


class _Usage:
    def __init__(self, prompt_tokens: int, max_tokens: int | None) -> None:
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = 0
        self.max_tokens = max_tokens or math.inf

    def add(self, chunk: Any) -> None:
        if type(chunk) is not str:
            raise TypeError(f"a completion's chunks must be text: the predictor yielded "
                            f"{json_kind(chunk)}")
        self.completion_tokens += 1

    @property
    def finish_reason(self) -> str:
        return "length" if self.completion_tokens >= self.max_tokens else "stop"

    def body(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}


def error_frame(message: str) -> bytes:
    """An error after the first chunk: the ``openai`` client raises it as an APIError."""
    return b"event: error\ndata: " + openai_error(500, message) + b"\n\n"


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"




def completions_openapi() -> dict[str, Any]:
    """The OpenAPI entry of ``POST /v1/completions`` (the lean path answers it, not FastAPI)."""
    error = {"description": "OpenAI's error: {\"error\": {\"message\": ...}}", "content": {
        "application/json": {"schema": {"type": "object", "required": ["error"]}}}}
    return {"post": {
        "summary": "Completions, OpenAI's API, streamed with stream: true (a predictor with "
                   "stream() whose items are prompts and whose chunks are text)",
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"type": "object", "required": ["prompt"], "properties": {
                "model": {"type": "string"},
                "prompt": {"type": "string"},
                "max_tokens": {"type": "integer", "minimum": 1},
                "temperature": {"type": "number", "minimum": 0, "maximum": 2},
                "stop": {"oneOf": [{"type": "string"},
                                   {"type": "array", "items": {"type": "string"}}]},
                "stream": {"type": "boolean"}}},
            "example": {"model": "any", "prompt": "Once upon a time", "max_tokens": 16}}}},
        "responses": {
            "200": {"description": "text_completion: choices[0].text and usage; with stream: "
                                   "true, one event per chunk, then data: [DONE]",
                    "content": {"application/json": {"schema": {"type": "object"}},
                                "text/event-stream": {"schema": {"type": "string"}}}},
            "400": error, "406": error, "413": error, "503": error}}}
