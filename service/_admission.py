"""Admission to the batching queue: what may enter it, and how long it may wait there.

Two bounds, both checked before a request is queued, so an overloaded service answers at once
instead of late: ``MAX_QUEUE_ROWS`` (rows waiting or in the running batch) and
``MAX_QUEUE_SECONDS``, the expected time to the answer: the rows ahead over the rows per second
the queue drains at, plus the forward pass of the request's own batch. That rate is measured on
recent batches at least half of ``MAX_BATCH_ROWS`` (the batches an overloaded queue runs; a lone
client's one-row batches say nothing about capacity), from the previous batch's end when the
replica went straight on to this one (the time between batches is part of how fast a queue
drains), times the replicas that run them side by side; the first batch seeds it. The wait is
aimed at 90% of the bound (:data:`HEADROOM`). Past either bound the request gets a
:class:`QueueFull` with the seconds to wait before retrying (HTTP 503 + ``Retry-After``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from service._errors import ServiceError
from service._inputs import BadRequest

__all__ = ["REASONS", "Admission", "DeadlineExceeded", "Disconnected", "QueueFull",
           "parse_timeout", "request_timeout"]

# predictor_rejected_requests_total{reason}: every value is exported from the start (at 0).
REASONS = ("queue_rows", "queue_wait", "deadline", "disconnected", "out_of_memory",
           "stream_slots")
_SMOOTHING = 0.3  # weight of the newest batch in the drain rate
# Admission aims the expected wait at this share of MAX_QUEUE_SECONDS: the rest absorbs the drain
# rate's jitter after admission (at 2.5x capacity on a shared 2-core box, p99 - p50 of the
# accepted requests' latency was about 7% of the bound), so their p99 stays within it.
HEADROOM = 0.9


class QueueFull(ServiceError):
    """The queue is over one of its bounds (HTTP ``status`` 503); ``retry_after`` is whole
    seconds (>= 1), for ``Retry-After``; ``reason`` labels the rejection metric."""

    status = 503

    def __init__(self, reason: str, message: str, retry_after: int) -> None:
        super().__init__(message, f"retry after {retry_after} s, or add capacity")
        self.reason = reason
        self.retry_after = retry_after


class DeadlineExceeded(ServiceError):
    """The request's deadline passed while it waited; it never reached a forward pass (504)."""

    status = 504
    reason = "deadline"

    def __init__(self, message: str) -> None:
        super().__init__(message, "allow more time (X-Request-Timeout, REQUEST_TIMEOUT_SECONDS) "
                                  "or add capacity")


class Disconnected(ServiceError):
    """The client went away while its request waited; it never reached a forward pass."""

    status = 499  # nginx's "client closed request": recorded, never sent
    reason = "disconnected"

    def __init__(self, message: str) -> None:
        super().__init__(message, "")


class Admission:
    """The queue's bounds. Rows bound the queue's length; the expected wait is reckoned in
    cost (an object predictor's ``cost(item)``; a tensor row costs 1), so a queue of long texts
    is known to drain slower than one of short ones."""

    def __init__(self, max_rows: int, max_seconds: float, batch_rows: int,
                 batch_cost: float = math.inf) -> None:
        self.max_rows = max_rows
        self.max_seconds = max_seconds
        self._full = max(1, batch_rows // 2)
        self._full_cost = batch_cost / 2
        self.rate: float | None = None  # cost per second the queue drains at; None: unknown
        self.forward = 0.0  # seconds of a batch's forward pass (the last one measured)

    def observe(self, rows: int, seconds: float, parallel: int = 1,
                cost: int | None = None, span: float | None = None) -> None:
        """A batch of ``rows`` (weighing ``cost``, default ``rows``) took ``seconds`` from
        dispatch to its answers, and ``span`` (default ``seconds``) since its replica's previous
        batch ended, on one of ``parallel`` replicas that drain the queue side by side."""
        cost = rows if cost is None else cost
        span = seconds if span is None else max(span, seconds)
        if seconds <= 0 or (rows < self._full and cost < self._full_cost
                            and self.rate is not None):
            return
        self.forward = seconds
        rate = cost / span * max(1, parallel)
        self.rate = rate if self.rate is None else (
            _SMOOTHING * rate + (1 - _SMOOTHING) * self.rate)

    def expected_wait(self, cost_ahead: int) -> float:
        """Seconds until a request that joins ``cost_ahead`` is answered: the queue ahead
        drains, then its own batch's forward pass runs."""
        return cost_ahead / self.rate + self.forward if self.rate else 0.0

    def check(self, rows_ahead: int, rows: int, cost_ahead: int | None = None,
              cost: int | None = None) -> None:
        """Raise :class:`QueueFull` unless a request of ``rows`` (weighing ``cost``; default:
        its rows) may join ``rows_ahead`` (weighing ``cost_ahead``)."""
        wait = self.expected_wait(rows_ahead if cost_ahead is None else cost_ahead)
        retry = max(1, math.ceil(wait))
        if rows_ahead + rows > self.max_rows:
            raise QueueFull("queue_rows", (
                f"queue is full: {rows_ahead} rows ahead, {rows} more would pass the limit of "
                f"{self.max_rows} rows (MAX_QUEUE_ROWS); retry in {retry} s"), retry)
        if wait > self.max_seconds * HEADROOM:
            raise QueueFull("queue_wait", (
                f"queue is full: the expected wait is {wait:.2f} s, over the limit of "
                f"{self.max_seconds * HEADROOM:g} s (MAX_QUEUE_SECONDS={self.max_seconds:g} less "
                f"{100 - 100 * HEADROOM:.0f}% for jitter); retry in {retry} s"), retry)


def parse_timeout(raw: str) -> float | None:
    """An ``X-Request-Timeout`` value: seconds > 0 (None for 0: no deadline); ValueError with
    the message for the client otherwise."""
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not 0 <= seconds <= 86400:  # also false for NaN
        raise ValueError(f"header 'X-Request-Timeout' has value {raw!r}: not a number of "
                         "seconds between 0 and 86400 (0: no deadline), e.g. 2.5")
    return seconds or None


def request_timeout(headers: Iterable[tuple[bytes, bytes]], default: float | None
                    ) -> float | None:
    """A request's deadline in seconds (None: none): its first ``X-Request-Timeout`` header,
    else ``default`` (REQUEST_TIMEOUT_SECONDS); a bad value is the client's mistake (400)."""
    for name, value in headers:
        if name == b"x-request-timeout":
            try:
                return parse_timeout(value.decode("latin-1"))
            except ValueError as exc:
                raise BadRequest(400, str(exc)) from None
    return default
