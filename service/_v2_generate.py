"""Triton's generate extension over the stream core: ``POST /v2/models/{name}/generate`` and
``/generate_stream``. ``text_input`` and the parameters (``max_tokens``, ``temperature``,
``stop``; at the top level or in ``parameters``) become a :class:`service.Prompt`; the answer is
``{"model_name", "model_version", "text_output"}``, whole, or one such event per chunk
(``text/event-stream``; the stream ends when the connection's response does, as Triton's).
Errors are ``{"error": "..."}``: the body of a 4xx/5xx before the first chunk, an
``event: error`` after it.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

from service._inputs import BadRequest, decode_json, json_kind
from service._prompt import Prompt, prompt_of
from service._sse import StreamFront, respond_json
from service._stream import ClientLeft

__all__ = ["Generate", "parse_generate"]


def parse_generate(payload: Any) -> Prompt:
    """A generate request's body as a prompt, or BadRequest (400) naming the field."""
    if type(payload) is not dict:
        raise BadRequest(400, f"body must be a JSON object with 'text_input', got "
                              f"{json_kind(payload)}")
    text = payload.get("text_input")
    if type(text) is not str:
        raise BadRequest(400, f"'text_input' must be a string, got {json_kind(text)}")
    parameters = payload.get("parameters", {})
    if type(parameters) is not dict:
        raise BadRequest(400, f"'parameters' must be an object, got {json_kind(parameters)}")
    return prompt_of(text, {**payload, **parameters}, 100.0)


class Generate:
    """The front-end: a generate request -> a stream of the core -> Triton's answer."""

    def __init__(self, front: StreamFront, model_version: str) -> None:
        self.front = front
        self.version = model_version

    async def __call__(self, scope: Scope, receive: Receive, send: Send, body: bytes,
                       stream_events: bool) -> None:
        front = self.front
        head = {"model_name": front.model_name, "model_version": self.version}
        try:
            replicas = front.streaming()
            prompt = parse_generate(decode_json(body))
            stream = front.open(replicas, prompt, scope, receive)
            first = await front.first(stream)
            if not stream_events:
                chunks = await front.collect(stream, first)
                text = "".join(_text(chunk) for chunk in chunks)
        except ClientLeft:
            return
        except Exception as exc:  # noqa: BLE001 - the protocol's error body
            status, message, headers = front.failure(exc)
            await respond_json(send, status, orjson.dumps({"error": message}), headers)
            return
        if not stream_events:
            await respond_json(send, 200, orjson.dumps({**head, "text_output": text}), [])
            return

        def frame(chunk: Any) -> bytes:
            return b"data: " + orjson.dumps({**head, "text_output": _text(chunk)}) + b"\n\n"

        await front.send_events(send, stream, first, frame, lambda: b"")


def _text(chunk: Any) -> str:
    if type(chunk) is not str:
        raise TypeError(f"generate's chunks must be text: the predictor yielded "
                        f"{json_kind(chunk)}")
    return chunk
