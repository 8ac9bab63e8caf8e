"""The stream core: a predictor's ``stream(item)`` generator, stepped one chunk at a time on a
replica's thread, its chunks in a bounded buffer that the HTTP front-ends empty.

- **Slots** (``MAX_STREAMS``): at most that many open streams per ready replica; a new stream
  goes to the replica with the fewest, and when every one is full it is refused
  (:class:`NoStreamSlot`: 503 + ``Retry-After``).
- **Batches are never starved**: a replica steps its streams in turn, one chunk each, with at
  most one step queued on its thread at a time; a batch of ``/predict`` goes into the same
  thread's queue, so it waits behind at most one chunk, never behind a whole stream.
- **Back-pressure**: a stream's buffer holds at most :data:`BUFFER_CHUNKS` chunks; a full one is
  not stepped until its reader takes a chunk (the reader is the socket: uvicorn's ``send``
  waits while the client does not read).
- **Cancellation**: a client that leaves cancels its stream; the generator is closed on the
  replica's thread (``GeneratorExit`` inside ``stream``) as soon as its current chunk is done,
  and its slot is free again.
- **Stop**: at the end of the drain (SIGTERM), every open stream ends with
  :class:`ServerStopping`; while draining, new streams are refused with it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from functools import partial
from typing import Any

from service._errors import MessageError, ServiceError
from service._predictor import HasStream
from service._replicas import Replica, ReplicaPool

__all__ = ["BUFFER_CHUNKS", "ClientLeft", "NoStreamSlot", "ServerStopping", "Stream",
           "StreamCore"]

log = logging.getLogger("service")
BUFFER_CHUNKS = 8  # chunks a stream's generator may run ahead of its reader
RETRY_AFTER_S = 1  # a stream slot frees when any open stream ends: try again soon


class NoStreamSlot(ServiceError):
    """Every ready replica has ``MAX_STREAMS`` open streams (HTTP 503 + ``Retry-After``)."""

    status = 503
    reason = "stream_slots"  # predictor_rejected_requests_total{reason}
    retry_after = RETRY_AFTER_S

    def __init__(self, message: str) -> None:
        super().__init__(message, "retry after a second, or raise MAX_STREAMS")


class ServerStopping(MessageError):
    """The server is stopping (SIGTERM): no new stream; an open one ends after the drain."""

    status = 503


class ClientLeft(Exception):
    """The stream's client disconnected: nobody reads it any more."""


class Stream:
    """One open stream: what its generator yielded and its reader has not taken yet."""

    def __init__(self, core: StreamCore, lane: _Lane, predictor: HasStream, item: Any) -> None:
        self.core = core
        self.lane = lane
        self.predictor = predictor
        self.item = item
        self.opened = time.monotonic()
        self.chunks: deque[Any] = deque()
        self.end: BaseException | None = None  # StopAsyncIteration, the error, or why it stopped
        self.generator: Iterator[Any] | None = None  # touched on the replica's thread only
        self.finished = False  # the generator ended, failed or was closed: its slot is free
        self.queued = False  # waiting for its turn on the replica
        self.stepping = False  # a step is on the replica's thread now
        self._waiter: asyncio.Future[None] | None = None
        self.unwatch: Callable[[], object] | None = None  # stops a front's disconnect watcher

    async def next(self) -> Any:
        """The next chunk; raises StopAsyncIteration at the end, else the generator's error,
        :class:`ServerStopping` or :class:`ClientLeft`."""
        while not self.chunks:
            if self.end is not None:
                raise self.end
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        chunk = self.chunks.popleft()
        self.lane.want(self)  # there is room again
        return chunk

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> Any:
        return await self.next()

    def cancel(self) -> None:
        """The client left: close the generator (after its current chunk), free the slot;
        counted in ``predictor_streams_cancelled_total``."""
        self.core.cancelled(self)
        self._stop(ClientLeft())

    def abort(self, error: BaseException) -> None:
        """The server gives up on it (a chunk it cannot send): as :meth:`cancel`, uncounted."""
        self._stop(error)

    def _push(self, chunk: Any) -> None:
        self.chunks.append(chunk)
        self._wake()

    def _finish(self, end: BaseException) -> None:
        if self.end is None:
            self.end = end
        self._wake()

    def _stop(self, end: BaseException) -> None:
        """End now (what is buffered is dropped) and close the generator."""
        self.chunks.clear()
        self._finish(end)
        self.lane.close(self)

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def full(self) -> bool:
        return len(self.chunks) >= self.core.buffer_chunks


class _Lane:
    """A replica's streams, stepped in turn: one step on its thread at a time."""

    def __init__(self, core: StreamCore, replica: Replica) -> None:
        self.core = core
        self.replica = replica
        self.open = 0
        self._turns: deque[Stream] = deque()
        self._stepping = False

    def add(self, stream: Stream) -> None:
        self.open += 1
        self.want(stream)

    def want(self, stream: Stream) -> None:
        """``stream`` may take its next step (it has room and is not done)."""
        if stream.queued or stream.stepping or stream.finished or stream.end is not None:
            return
        if stream.full:
            return
        stream.queued = True
        self._turns.append(stream)
        self._next()

    def _next(self) -> None:
        while self._turns and not self._stepping:
            stream = self._turns.popleft()
            stream.queued = False
            if stream.finished or stream.end is not None:
                continue
            self._stepping = stream.stepping = True
            loop = asyncio.get_running_loop()
            job = self.replica.executor.submit(_step, stream)
            job.add_done_callback(partial(self._on_loop, loop, stream))

    def _on_loop(self, loop: asyncio.AbstractEventLoop, stream: Stream,
                 job: Future[tuple[bool, Any]]) -> None:
        loop.call_soon_threadsafe(self._stepped, stream, job)

    def _stepped(self, stream: Stream, job: Future[tuple[bool, Any]]) -> None:
        self._stepping = stream.stepping = False
        error = job.exception()
        if stream.end is not None:  # cancelled or stopped while it ran: close it now
            self.close(stream)
        elif error is not None:
            self._release(stream)
            stream._finish(error)
        else:
            more, chunk = job.result()
            if more:
                stream._push(chunk)
                self.want(stream)
            else:
                self._release(stream)
                stream._finish(StopAsyncIteration())
        self._next()

    def close(self, stream: Stream) -> None:
        """Close the generator on the replica's thread (unless a step runs now: then after it),
        then free the slot."""
        if stream.finished or stream.stepping:
            return
        stream.finished = True  # no more steps
        if stream.generator is None:
            self._release(stream, closed=True)
            return
        loop = asyncio.get_running_loop()
        job = self.replica.executor.submit(_close, stream)
        job.add_done_callback(lambda _: loop.call_soon_threadsafe(self._release, stream, True))

    def _release(self, stream: Stream, closed: bool = False) -> None:
        if not closed:
            stream.finished = True
        self.open -= 1
        self.core.released(stream)


def _step(stream: Stream) -> tuple[bool, Any]:
    """On the replica's thread: the next chunk (the first call starts the generator)."""
    if stream.generator is None:
        stream.generator = iter(stream.predictor.stream(stream.item))
    try:
        return True, next(stream.generator)
    except StopIteration:
        return False, None


def _close(stream: Stream) -> None:
    """On the replica's thread: GeneratorExit inside ``stream``; what it raises is logged."""
    close = getattr(stream.generator, "close", None)
    if close is None:
        return
    try:
        close()
    except Exception:
        log.exception("stream: the generator failed while closing")


class StreamCore:
    """The open streams of one service, over its replicas."""

    def __init__(self, max_streams: int, on_open: Callable[[], None],
                 on_release: Callable[[], None], on_cancel: Callable[[], None],
                 draining: Callable[[], bool] = lambda: False,
                 buffer_chunks: int = BUFFER_CHUNKS) -> None:
        self.max_streams = max_streams
        self._draining = draining
        self.buffer_chunks = buffer_chunks
        self.stopping = False
        self._on_open = on_open
        self._on_release = on_release
        self._on_cancel = on_cancel
        self._lanes: dict[int, _Lane] = {}
        self._open: set[Stream] = set()

    def open(self, replicas: ReplicaPool, item: Any) -> Stream:
        """A new stream of ``item`` on the ready replica with the fewest open streams (the
        first of them on a tie). Raises :class:`ServerStopping` or :class:`NoStreamSlot`."""
        if self.stopping or self._draining():
            raise ServerStopping("the server is stopping: no new streams; retry on another "
                                 "instance")
        best: _Lane | None = None
        for replica in replicas.replicas:
            if replica.state != "ready" or not isinstance(replica.predictor, HasStream):
                continue
            lane = self._lanes.get(replica.index)
            if lane is None or lane.replica is not replica:
                lane = self._lanes[replica.index] = _Lane(self, replica)
            if best is None or lane.open < best.open:
                best = lane
        if best is None or best.open >= self.max_streams:
            ready = sum(r.state == "ready" for r in replicas.replicas)
            raise NoStreamSlot(f"no stream slot free: {self.max_streams} stream(s) open on each "
                               f"of {ready} ready replica(s) (MAX_STREAMS={self.max_streams}); "
                               f"retry in {RETRY_AFTER_S} s")
        assert isinstance(best.replica.predictor, HasStream)
        stream = Stream(self, best, best.replica.predictor, item)
        self._open.add(stream)
        self._on_open()
        best.add(stream)
        return stream

    def stop(self) -> None:
        """The drain is over: every open stream ends with :class:`ServerStopping`."""
        self.stopping = True
        for stream in list(self._open):
            stream._stop(ServerStopping("the server is stopping; the stream was cut at the end "
                                        "of its drain period (DRAIN_SECONDS)"))

    @property
    def in_flight(self) -> int:
        return len(self._open)

    def cancelled(self, stream: Stream) -> None:
        if stream in self._open and stream.end is None:
            self._on_cancel()

    def released(self, stream: Stream) -> None:
        if stream in self._open:
            self._open.discard(stream)
            self._on_release()
