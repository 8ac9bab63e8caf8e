"""Dynamic batching: concurrent requests share one forward pass, run on an idle model replica.

One queue for all replicas (``service/_replicas.py``): a batch is dispatched when a replica is
idle and its share of the rows that were in the system when the last batch finished is waiting
(that batch's rows, those then waiting and those on other replicas, over the ready replicas;
capped by ``max_rows``), or when the oldest request has waited long enough: half the last
forward pass, at most ``max_wait``, and not at all when that is under half a millisecond. Under
steady load the callers of the last batch come back within that wait, so a heavy model keeps
whole batches instead of two alternating half-batches (the wide MLP does 30% more rows per
second at batch 32 than at 16); a light model's forward is not worth waiting for, so its
batches pipeline; a lone client's system holds one row: it waits for nobody. Rows that wait
while several replicas are idle are shared out between them. A replica whose device fails
hands its batch back to the front of the queue, once per request, for another replica.

Admission (:mod:`service._admission`) decides what may enter the queue (:meth:`Batcher.enqueue`
raises :class:`QueueFull`). A queued request leaves it before its forward pass when its deadline
passes (:class:`DeadlineExceeded`) or its client goes away (:meth:`Batcher.withdraw`). A forward
pass that runs out of device memory (:class:`OutOfMemory`) is retried once as two halves of its
rows on the same replica: the device is fine, the batch was too big.
"""

from __future__ import annotations

import asyncio
import math
import time
from array import array
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from service._admission import Admission, DeadlineExceeded, Disconnected
from service._errors import MessageError
from service._predictor import Batch, OutOfMemory
from service._replicas import Replica, ReplicaPool

__all__ = ["Batcher", "NoReplica", "Outputs", "Ticket"]

Outputs = dict[str, list[Any]]
# Below this a hold costs more (an idle worker, a timer) than the bigger batch saves.
MIN_HOLD_S = 0.0005
# rows, each request's queue wait, forward seconds, replica index, replica device
Observer = Callable[[int, Sequence[float], float, int, str], None]
Predict = Callable[[Batch], Mapping[str, Sequence[Any]]]
# torch's out-of-memory error as OutOfMemory, None for any other (service/_torch.py decides)
OomMapper = Callable[[BaseException], "OutOfMemory | None"]


class NoReplica(MessageError):
    """No replica could run the request: its device failed twice, or every replica failed."""


@dataclass(eq=False)
class Ticket:
    """A queued request: its answer is ``future``."""

    values: array[float]
    rows: int
    future: asyncio.Future[Outputs]
    enqueued: float = field(default_factory=time.monotonic)
    retried: bool = False  # handed back once by a replica whose device failed
    timeout: float | None = None  # seconds it may wait for its forward pass
    deadline: float = math.inf  # monotonic time when that wait ends


def _no_oom(error: BaseException) -> OutOfMemory | None:
    return None


class Batcher:
    def __init__(self, replicas: ReplicaPool, width: int, max_rows: int, max_wait_s: float,
                 observe: Observer, admission: Admission | None = None,
                 out_of_memory: OomMapper = _no_oom) -> None:
        self._replicas = replicas
        self.admission = admission
        self._out_of_memory = out_of_memory
        self.width = width
        self._max_rows = max_rows
        self._max_wait = max_wait_s
        self._observe = observe
        self._pending: list[Ticket] = []
        self._pending_rows = 0
        self._running = 0  # batches on replicas now
        self._running_rows = 0  # and their rows
        # a ready replica's share of the rows in the system at the last finish: dispatch to an
        # idle replica when as many wait
        self._target = 1
        self._wait = 0.0  # how long to hold a short batch: half the last forward, <= max_wait
        self._handle: asyncio.Handle | asyncio.TimerHandle | None = None
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._next_deadline = math.inf  # when the deadline timer fires
        self._loop: asyncio.AbstractEventLoop | None = None

    async def submit(self, values: array[float], rows: int, timeout: float | None = None
                     ) -> Outputs:
        """This request's rows of the outputs, in order (see :meth:`enqueue`)."""
        return await self.enqueue(values, rows, timeout).future

    def enqueue(self, values: array[float], rows: int, timeout: float | None = None) -> Ticket:
        """Queue a request. Raises :class:`QueueFull` when admission refuses it; its future
        raises :class:`DeadlineExceeded` when ``timeout`` seconds pass before its forward."""
        loop = self._loop or self._bind()
        if self.admission is not None:
            self.admission.check(self._pending_rows + self._running_rows, rows)
        item = Ticket(values, rows, loop.create_future())
        if timeout is not None:
            item.timeout, item.deadline = timeout, item.enqueued + timeout
            if item.deadline < self._next_deadline:
                self._arm_deadline(loop, item.deadline)
        self._pending.append(item)
        self._pending_rows += rows
        if self._running < self._replicas.ready:  # else a finishing replica dispatches
            self._schedule(loop)
        return item

    def withdraw(self, item: Ticket) -> None:
        """The client went away: drop its request unless its forward pass has begun."""
        self._drop(item, Disconnected("the client disconnected"))

    @property
    def queued_rows(self) -> int:
        """Rows waiting plus rows in the running batches (what a new request waits behind)."""
        return self._pending_rows + self._running_rows

    def _arm_deadline(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        """One timer for the earliest deadline in the queue (not one per request: a timer per
        request cost 10 us and a 100 ms p99 under uvloop)."""
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
        self._next_deadline = when
        self._deadline_timer = loop.call_later(max(0.0, when - time.monotonic()), self._expire)

    def _expire(self) -> None:
        """Deadlines passed. With a replica idle the requests wait behind nobody (a hold for a
        fuller batch is the batcher's choice, not the client's): they run now instead. The
        rest of the expired leave the queue with :class:`DeadlineExceeded`."""
        self._deadline_timer, self._next_deadline = None, math.inf
        now = time.monotonic()
        if (self._running < self._replicas.ready
                and any(i.deadline <= now for i in self._pending)):
            if self._handle is not None:
                self._handle.cancel()
            self._dispatch()
        # one pass: what stays, what leaves (dropping each from the list's middle was
        # quadratic when many expire at once, i.e. under overload)
        kept: list[Ticket] = []
        expired: list[Ticket] = []
        upcoming = math.inf
        for item in self._pending:
            if item.deadline <= now:
                expired.append(item)
            else:
                kept.append(item)
                upcoming = min(upcoming, item.deadline)
        if expired:
            self._pending[:] = kept
            self._pending_rows -= sum(item.rows for item in expired)
            for item in expired:
                if not item.future.done():
                    item.future.set_exception(DeadlineExceeded(
                        f"the request waited its deadline of {item.timeout:g} s in the queue"))
        if upcoming < math.inf and self._loop is not None:
            self._arm_deadline(self._loop, upcoming)

    def _drop(self, item: Ticket, error: Exception) -> None:
        for i, queued in enumerate(self._pending):
            if queued is item:
                del self._pending[i]
                self._pending_rows -= item.rows
                if not item.future.done():
                    item.future.set_exception(error)
                return

    def wake(self) -> None:
        """A replica changed state: dispatch to one that got ready, fail what nobody can run."""
        if self._loop is None:
            return
        if self._replicas.status == "failed":
            self._fail_pending()
        elif self._pending and self._running < self._replicas.ready:
            self._schedule(self._loop)

    def _bind(self) -> asyncio.AbstractEventLoop:
        self._loop = asyncio.get_running_loop()
        return self._loop

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        ready = self._pending_rows >= min(self._target, self._max_rows)
        if self._handle is not None:
            if not (ready and isinstance(self._handle, asyncio.TimerHandle)):
                return  # already due
            self._handle.cancel()
        if ready or self._wait < MIN_HOLD_S:
            self._handle = loop.call_soon(self._dispatch)
        else:
            delay = self._pending[0].enqueued + self._wait - time.monotonic()
            self._handle = loop.call_later(max(0.0, delay), self._dispatch)

    def _dispatch(self) -> None:
        """One batch to each idle replica while enough rows wait (the first batch regardless);
        what waits is shared out over the idle replicas, so they all work."""
        self._handle = None
        first = True
        while self._pending and (first or self._pending_rows >= min(self._target,
                                                                     self._max_rows)):
            idle = self._replicas.ready - self._running
            replica = self._replicas.take()
            if replica is None:
                return  # a finishing replica dispatches again
            self._start(replica, min(self._max_rows, -(-self._pending_rows // max(1, idle))))
            first = False
        if self._pending and self._running < self._replicas.ready and self._loop is not None:
            self._schedule(self._loop)  # a short batch for the next idle replica: hold it

    def _start(self, replica: Replica, limit: int) -> None:
        taken: list[Ticket] = []
        rows = 0
        count = 0
        for item in self._pending:  # requests are never split: the first goes however big
            if taken and rows + item.rows > limit:
                break
            count += 1
            if item.future.done():  # cancelled by its caller: no work for nobody
                self._pending_rows -= item.rows
                continue
            taken.append(item)
            rows += item.rows
        del self._pending[:count]
        self._pending_rows -= rows
        if not taken:
            self._replicas.release(replica)
            return
        self._running += 1
        self._running_rows += rows
        started = time.monotonic()
        loop = self._loop
        assert loop is not None and replica.predictor is not None
        job = replica.executor.submit(self._run, replica.predictor.predict, taken, rows)
        job.add_done_callback(lambda done: loop.call_soon_threadsafe(
            self._finished, replica, taken, rows, started, done))

    def _run(self, predict: Predict, items: list[Ticket], rows: int
             ) -> tuple[list[Outputs], float]:
        """In the replica's thread: one forward pass (in halves once if it runs out of device
        memory), then each item's slice of every column."""
        values = items[0].values
        if len(items) > 1:
            values = array("f", values)
            for item in items[1:]:
                values += item.values
        t0 = time.perf_counter()
        try:
            columns = self._forward(predict, values, rows)
        except OutOfMemory as exc:
            if rows < 2:
                raise
            half = rows // 2
            cut = half * self.width
            try:  # retried once, in halves; a half that fails again fails the batch
                first = self._forward(predict, values[:cut], half)
                second = self._forward(predict, values[cut:], rows - half)
            except OutOfMemory as again:
                raise OutOfMemory(f"{again.message} (also in halves: the batch of {rows} rows "
                                  f"was retried as {half} + {rows - half})") from exc
            columns = [(name, column + other[1]) for (name, column), other in zip(first, second)]
        seconds = time.perf_counter() - t0
        parts, start = [], 0
        for item in items:
            end = start + item.rows
            parts.append({name: column[start:end] for name, column in columns})
            start = end
        return parts, seconds

    def _forward(self, predict: Predict, values: array[float], rows: int
                 ) -> list[tuple[str, list[Any]]]:
        try:
            outputs = predict(Batch(values, rows, self.width))
        except OutOfMemory:
            raise
        except Exception as exc:
            mapped = self._out_of_memory(exc)
            if mapped is not None:
                raise mapped from exc
            raise
        for name, column in outputs.items():
            if len(column) != rows:
                raise ValueError(f"predictor output {name!r} has {len(column)} items for "
                                 f"{rows} rows")
        return [(name, list(column)) for name, column in outputs.items()]

    def _finished(self, replica: Replica, items: list[Ticket], rows: int, started: float,
                  job: Future[tuple[list[Outputs], float]]) -> None:
        self._running -= 1
        self._running_rows -= rows
        self._replicas.release(replica)
        error = job.exception()
        if error is not None:
            reason = self._replicas.device_failed(replica, error)
            if reason is not None:
                self._hand_back(items, f"device error on replica {replica.index} "
                                       f"({replica.device}), after a retry: {reason}")
            else:
                for item in items:
                    if not item.future.done():
                        item.future.set_exception(error)
        else:
            # the rows in the system now, each replica's share of them
            in_system = rows + self._pending_rows + self._running_rows
            self._target = max(1, -(-in_system // max(1, self._replicas.ready)))
            parts, seconds = job.result()
            if self.admission is not None:
                self.admission.observe(rows, time.monotonic() - started,
                                       self._replicas.ready)
            self._wait = min(self._max_wait, seconds / 2)
            if self._wait < MIN_HOLD_S:
                self._wait = 0.0
            for item, part in zip(items, parts):
                if not item.future.done():
                    item.future.set_result(part)
            self._observe(rows, [started - item.enqueued for item in items], seconds,
                          replica.index, replica.device)
        if self._handle is not None:  # decided afresh below
            self._handle.cancel()
            self._handle = None
        if self._replicas.status == "failed":
            self._fail_pending()
        elif self._pending:
            if (self._pending_rows >= min(self._target, self._max_rows)
                    or time.monotonic() - self._pending[0].enqueued >= self._wait):
                self._dispatch()
            elif self._loop is not None:
                self._schedule(self._loop)

    def _hand_back(self, items: list[Ticket], final: str) -> None:
        """A failed device's batch: to the front of the queue once; a second failure is final."""
        again = []
        for item in items:
            if item.future.done():
                continue
            if item.retried:
                item.future.set_exception(NoReplica(final))
            else:
                item.retried = True
                again.append(item)
        self._pending[:0] = again
        self._pending_rows += sum(item.rows for item in again)

    def _fail_pending(self) -> None:
        error = NoReplica(f"every replica failed: {self._replicas.reason()}")
        for item in self._pending:
            if not item.future.done():
                item.future.set_exception(error)
        self._pending.clear()
        self._pending_rows = 0
