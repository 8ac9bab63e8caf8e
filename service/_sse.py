"""Server-Sent Events, shared by the stream front-ends (``/predict``, ``/v1/completions``,
``/v2/models/{name}/generate_stream``): the framing, and :class:`StreamFront`, which opens a
stream for a request, answers an error before the first chunk as a plain 4xx/5xx, then sends
each chunk as one event as soon as it is ready, and cancels the stream when the client leaves.

Framing: ``data: <JSON>\\n\\n`` per chunk; ``data: [DONE]\\n\\n`` at the end (where the protocol
has it); an error after the first chunk is ``event: error\\ndata: {"error": "..."}\\n\\n``, and
the stream ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

from service._core import Core
from service._drain import Drain
from service._http import DISCONNECT_HOOK
from service._inputs import BadRequest
from service._predictor import HasStream
from service._replicas import ReplicaPool
from service._stream import ClientLeft, NoStreamSlot, ServerStopping, Stream, StreamCore

__all__ = ["DONE", "EVENT_HEADERS", "StreamFront", "data_event", "error_event", "respond_json",
           "wants_events"]

log = logging.getLogger("service")
DONE = b"data: [DONE]\n\n"
# no-cache: nothing between keeps a copy; X-Accel-Buffering: nginx passes each event on at once
EVENT_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"),
                 (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]
_JSON = [(b"content-type", b"application/json")]
_EMPTY = object()  # a stream that ended before its first chunk
Headers = list[tuple[bytes, bytes]]


def data_event(data: Any) -> bytes:
    return b"data: " + orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n\n"


def error_event(message: str) -> bytes:
    return b"event: error\ndata: " + orjson.dumps({"error": message}) + b"\n\n"


async def respond_json(send: Send, status: int, content: bytes, headers: Headers) -> None:
    """A whole JSON answer (a front-end's plain answer, or its error before a stream)."""
    await send({"type": "http.response.start", "status": status,
                "headers": [*_JSON, (b"content-length", b"%d" % len(content)), *headers]})
    await send({"type": "http.response.body", "body": content})


def wants_events(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """The request's ``Accept`` names ``text/event-stream``."""
    for name, value in headers:
        if name == b"accept" and any(part.split(b";")[0].strip().lower() == b"text/event-stream"
                                     for part in value.split(b",")):
            return True
    return False


class StreamFront:
    """What every stream front-end does with the stream core (over the service's core); each
    protocol brings its parsing and its framing."""

    def __init__(self, core: Core, drain: Drain | None) -> None:
        self.core = core
        self.metrics = core.metrics
        metrics = core.metrics
        self.streams = StreamCore(core.settings.max_streams, metrics.stream_opened,
                                  metrics.stream_ended, metrics.stream_cancelled,
                                  lambda: drain is not None and drain.draining)
        if drain is not None:
            drain.on_end(self.streams.stop)

    @property
    def model_name(self) -> str:
        return self.core.model_name

    def streaming(self, hint: str = "") -> ReplicaPool:
        """The replicas, when the service is ready and its predictor streams; else the plain
        answer's BadRequest (503 not ready, 406 no ``stream``, with ``hint``)."""
        core, replicas = self.core, self.core.replicas
        if core.status != "ready" or replicas is None:
            raise BadRequest(503, f"model is not ready ({core.status})",
                             [(b"retry-after", b"1")])
        if not (core.objects and isinstance(core.predictor, HasStream)):
            raise BadRequest(406, "this model does not stream: its predictor has no stream() "
                                  "method" + hint)
        return replicas

    def cost(self, item: Any) -> int:
        return self.core.cost(item)

    def open(self, replicas: ReplicaPool, item: Any, scope: Scope, receive: Receive) -> Stream:
        """A stream of ``item``, cancelled when the client leaves (the server's disconnect hook,
        else ``receive``'s ``http.disconnect``). Raises :class:`NoStreamSlot` and
        :class:`ServerStopping` (see :meth:`failure`)."""
        stream = self.streams.open(replicas, item)
        hook = scope.get("extensions", {}).get(DISCONNECT_HOOK)
        if hook is not None:
            hook(stream.cancel)
        else:
            watcher = asyncio.ensure_future(_watch(receive, stream))
            stream.unwatch = watcher.cancel
        return stream

    def failure(self, error: Exception) -> tuple[int, str, Headers]:
        """The plain answer to an error before the first chunk: status, message, headers."""
        if isinstance(error, NoStreamSlot):
            self.metrics.reject(error.reason)
            return 503, error.message, [(b"retry-after", b"%d" % error.retry_after)]
        if isinstance(error, ServerStopping):
            return 503, error.message, [(b"connection", b"close")]
        if isinstance(error, BadRequest):
            return error.status, error.message, list(error.headers)
        status, message, retry = self.core.failure(error)
        return status, message, [] if retry is None else [(b"retry-after", b"%d" % retry)]

    async def first(self, stream: Stream) -> Any:
        """The first chunk (``_EMPTY`` if there is none); raises the stream's error, or
        :class:`ClientLeft`."""
        try:
            chunk = await stream.next()
        except StopAsyncIteration:
            chunk = _EMPTY
        self.metrics.stream_first_chunk(time.monotonic() - stream.opened)
        return chunk

    async def send_events(self, send: Send, stream: Stream, first: Any,
                          frame: Callable[[Any], bytes],
                          done: Callable[[], bytes] = lambda: DONE,
                          error: Callable[[str], bytes] = error_event) -> None:
        """200 ``text/event-stream``: each chunk as ``frame`` makes it (the first is ``first``),
        sent as soon as it is ready; then ``done()``; an error after the first chunk is an
        ``error`` event (with the message) that ends the stream."""
        await send({"type": "http.response.start", "status": 200, "headers": EVENT_HEADERS})
        try:
            if first is not _EMPTY:
                await self._send_chunk(send, frame(first))
                async for chunk in stream:
                    await self._send_chunk(send, frame(chunk))
            tail = done()
        except ClientLeft:
            return
        except Exception as exc:  # noqa: BLE001 - after the head: told as an event
            tail = error(self.message(exc))
            stream.abort(exc)  # a frame that failed: the generator may still be running
        finally:
            _unwatch(stream)
        await send({"type": "http.response.body", "body": tail, "more_body": False})

    async def collect(self, stream: Stream, first: Any) -> list[Any]:
        """Every chunk (for a protocol's answer in one piece)."""
        chunks = [] if first is _EMPTY else [first]
        try:
            async for chunk in stream:
                chunks.append(chunk)
        finally:
            _unwatch(stream)
        return chunks

    async def _send_chunk(self, send: Send, event: bytes) -> None:
        await send({"type": "http.response.body", "body": event, "more_body": True})
        self.metrics.stream_chunk()

    def message(self, error: Exception) -> str:
        """An error after the first chunk, as the text of its ``event: error``."""
        if isinstance(error, ServerStopping):
            return error.message
        return self.failure(error)[1]


async def _watch(receive: Receive, stream: Stream) -> None:
    """Without the server's hook: the body is read, so the next message is the disconnect."""
    if (await receive())["type"] == "http.disconnect":
        stream.cancel()


def _unwatch(stream: Stream) -> None:
    if stream.unwatch is not None:
        stream.unwatch()
