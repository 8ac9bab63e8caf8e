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

What a replica does with a batch is the :class:`service._work.Work` of the predictor's kind:
tensor rows (first come, first served) or objects. Objects carry a cost (``cost(item)``): a
batch holds at most ``max_cost`` of it, grouped by cost with the oldest first
(:mod:`service._grouping`).

Admission (:mod:`service._admission`) decides what may enter the queue (:meth:`Batcher.enqueue`
raises :class:`QueueFull`). A queued request leaves it before its forward pass when its deadline
passes (:class:`DeadlineExceeded`) or its client goes away (:meth:`Batcher.withdraw`). A forward
pass that runs out of device memory (:class:`OutOfMemory`) is retried once as two halves of its
rows on the same replica: the device is fine, the batch was too big. Any other error of the
forward pass is logged once and fails the batch's requests (:class:`InferenceFailed`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from service._admission import Admission, DeadlineExceeded, Disconnected
from service._errors import MessageError
from service._grouping import take_grouped
from service._replicas import Replica, ReplicaPool
from service._work import Part, Work

__all__ = ["Batcher", "InferenceFailed", "NoReplica", "Outputs", "Ticket"]

log = logging.getLogger("service")
Outputs = dict[str, list[Any]]
# Below this a hold costs more (an idle worker, a timer) than the bigger batch saves.
MIN_HOLD_S = 0.0005
# rows, each request's queue wait, forward seconds, replica index, replica device
Observer = Callable[[int, Sequence[float], float, int, str], None]


class NoReplica(MessageError):
    """No replica could run the request: its device failed twice, or every replica failed."""


class InferenceFailed(MessageError):
    """The forward pass of the request's batch raised (the model's error, logged once with its
    traceback for the whole batch); the replica goes on serving (HTTP 500)."""

    status = 500


@dataclass(eq=False)
class Ticket:
    """A queued request (or a part of one): ``values`` are its float32 rows (tensor) or its
    items (object), ``rows`` how many, ``cost`` what they weigh in a batch (rows, for
    tensors), ``key`` what groups it with others (its costliest item). Its answer is
    ``future``: the columns (tensor) or the list of outputs (object)."""

    values: Any
    rows: int
    future: asyncio.Future[Any]
    cost: int = 0
    key: int = 0
    enqueued: float = field(default_factory=time.monotonic)
    retried: bool = False  # handed back once by a replica whose device failed
    timeout: float | None = None  # seconds it may wait for its forward pass
    deadline: float = math.inf  # monotonic time when that wait ends


class Batcher:
    def __init__(self, replicas: ReplicaPool, work: Work, max_rows: int, max_wait_s: float,
                 observe: Observer, admission: Admission | None = None,
                 max_cost: float = math.inf) -> None:
        self._replicas = replicas
        self.admission = admission
        self.work = work
        self._max_rows = max_rows
        self.max_cost = max_cost  # of a batch (objects; tensors: rows alone bound it)
        self._max_wait = max_wait_s
        self._observe = observe
        self._pending: list[Ticket] = []
        self._pending_rows = 0
        self._pending_cost = 0
        self._running = 0  # batches on replicas now
        self._running_rows = 0  # and their rows
        self._running_cost = 0  # and their cost
        # a ready replica's share of the rows in the system at the last finish: dispatch to an
        # idle replica when as many wait
        self._target = 1
        self._wait = 0.0  # how long to hold a short batch: half the last forward, <= max_wait
        self._handle: asyncio.Handle | asyncio.TimerHandle | None = None
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._next_deadline = math.inf  # when the deadline timer fires
        self._loop: asyncio.AbstractEventLoop | None = None

    async def submit(self, values: Any, rows: int, timeout: float | None = None) -> Any:
        """This request's rows of the outputs, in order (see :meth:`enqueue`)."""
        return await self.enqueue(values, rows, timeout).future

    def enqueue(self, values: Any, rows: int, timeout: float | None = None,
                cost: int | None = None, key: int = 0) -> Ticket:
        """Queue a request of ``rows`` rows or items weighing ``cost`` (default: ``rows``).
        Raises :class:`QueueFull` when admission refuses it; its future raises
        :class:`DeadlineExceeded` when ``timeout`` seconds pass before its forward."""
        loop = self._loop or self._bind()
        if cost is None:
            cost = rows
        if self.admission is not None:
            self.admission.check(self._pending_rows + self._running_rows, rows,
                                 self._pending_cost + self._running_cost, cost)
        item = Ticket(values, rows, loop.create_future(), cost, key)
        if timeout is not None:
            item.timeout, item.deadline = timeout, item.enqueued + timeout
            if item.deadline < self._next_deadline:
                self._arm_deadline(loop, item.deadline)
        self._pending.append(item)
        self._pending_rows += rows
        self._pending_cost += cost
        if self._running < self._replicas.ready:  # else a finishing replica dispatches
            self._schedule(loop)
        return item

    def withdraw(self, item: Ticket) -> None:
        """The client went away: drop its request unless its forward pass has begun."""
        self._drop(item, Disconnected("the client disconnected"))

    @property
    def queued_cost(self) -> int:
        """What :attr:`queued_rows` weigh (the same for tensors)."""
        return self._pending_cost + self._running_cost

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
            self._pending_cost -= sum(item.cost for item in expired)
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
                self._pending_cost -= item.cost
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

    def _full(self) -> bool:
        """Enough waits for a batch: a replica's share of the rows, or a batch's cost."""
        return (self._pending_rows >= min(self._target, self._max_rows)
                or self._pending_cost >= self.max_cost)

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        ready = self._full()
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
        while self._pending and (first or self._full()):
            idle = self._replicas.ready - self._running
            replica = self._replicas.take()
            if replica is None:
                return  # a finishing replica dispatches again
            self._start(replica, min(self._max_rows, -(-self._pending_rows // max(1, idle))))
            first = False
        if self._pending and self._running < self._replicas.ready and self._loop is not None:
            self._schedule(self._loop)  # a short batch for the next idle replica: hold it

    def _start(self, replica: Replica, limit: int) -> None:
        taken, rows, cost = (self._take_grouped(limit) if self.work.grouped
                             else self._take_in_order(limit))
        if not taken:
            self._replicas.release(replica)
            return
        self._running += 1
        self._running_rows += rows
        self._running_cost += cost
        started = time.monotonic()
        loop = self._loop
        assert loop is not None and replica.predictor is not None
        job = replica.executor.submit(self.work.run, replica.predictor, taken, rows)
        job.add_done_callback(lambda done: loop.call_soon_threadsafe(
            self._finished, replica, taken, rows, cost, started, done))

    def _take_in_order(self, limit: int) -> tuple[list[Ticket], int, int]:
        """The queue's head, up to ``limit`` rows (tensors: their cost is their rows)."""
        taken: list[Ticket] = []
        rows = 0
        count = 0
        for item in self._pending:  # requests are never split: the first goes however big
            if taken and rows + item.rows > limit:
                break
            count += 1
            if item.future.done():  # cancelled by its caller: no work for nobody
                self._pending_rows -= item.rows
                self._pending_cost -= item.cost
                continue
            taken.append(item)
            rows += item.rows
        del self._pending[:count]
        self._pending_rows -= rows
        self._pending_cost -= rows
        return taken, rows, rows

    def _take_grouped(self, limit: int) -> tuple[list[Ticket], int, int]:
        """Similar costs together, the oldest first (:func:`service._grouping.take_grouped`)."""
        live = []
        for item in self._pending:
            if item.future.done():  # cancelled by its caller: no work for nobody
                self._pending_rows -= item.rows
                self._pending_cost -= item.cost
            else:
                live.append(item)
        taken, self._pending[:] = take_grouped(live, limit, self.max_cost)
        rows = sum(item.rows for item in taken)
        cost = sum(item.cost for item in taken)
        self._pending_rows -= rows
        self._pending_cost -= cost
        return taken, rows, cost

    def _finished(self, replica: Replica, items: list[Ticket], rows: int, cost: int,
                  started: float, job: Future[tuple[list[Part], float]]) -> None:
        self._running -= 1
        self._running_rows -= rows
        self._running_cost -= cost
        previous = replica.idle_since  # when its last batch ended
        self._replicas.release(replica)
        error = job.exception()
        if error is not None:
            reason = self._replicas.device_failed(replica, error)
            if reason is not None:
                self._hand_back(items, f"device error on replica {replica.index} "
                                       f"({replica.device}), after a retry: {reason}")
            else:
                if not isinstance(error, MessageError):  # the service's own: answered as such
                    log.error("inference failed on replica %d (%s), a batch of %d rows from %d "
                              "request(s)", replica.index, replica.device, rows, len(items),
                              exc_info=error)
                    error = InferenceFailed(f"inference failed: {type(error).__name__}: {error}")
                for item in items:
                    if not item.future.done():
                        item.future.set_exception(error)
        else:
            # the rows in the system now, each replica's share of them
            in_system = rows + self._pending_rows + self._running_rows
            self._target = max(1, -(-in_system // max(1, self._replicas.ready)))
            parts, seconds = job.result()
            if self.admission is not None:
                now = time.monotonic()
                # straight on from its previous batch: the time between them is drain time too
                since = previous if started - previous <= self._max_wait + MIN_HOLD_S else started
                self.admission.observe(rows, now - started, self._replicas.ready, cost,
                                       now - since)
            self._wait = min(self._max_wait, seconds / 2)
            if self._wait < MIN_HOLD_S:
                self._wait = 0.0
            for item, part in zip(items, parts):
                if item.future.done():
                    continue
                if isinstance(part, Exception):  # this request's own input error
                    item.future.set_exception(part)
                else:
                    item.future.set_result(part)
            self._observe(rows, [started - item.enqueued for item in items], seconds,
                          replica.index, replica.device)
        if self._handle is not None:  # decided afresh below
            self._handle.cancel()
            self._handle = None
        if self._replicas.status == "failed":
            self._fail_pending()
        elif self._pending:
            if (self._full()
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
        self._pending_cost += sum(item.cost for item in again)

    def _fail_pending(self) -> None:
        error = NoReplica(f"every replica failed: {self._replicas.reason()}")
        for item in self._pending:
            if not item.future.done():
                item.future.set_exception(error)
        self._pending.clear()
        self._pending_rows = 0
        self._pending_cost = 0
