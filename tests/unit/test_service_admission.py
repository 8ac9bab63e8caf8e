"""Admission to the batching queue, deadlines, withdrawn requests and the out-of-memory split:
the batcher in-process, its predictor a recorder."""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest

from service._admission import Admission, DeadlineExceeded, Disconnected, QueueFull, parse_timeout
from service._batcher import Batcher
from service._device import ReplicaSlot
from service._predictor import Batch, OutOfMemory
from service._replicas import CpuOnlyRuntime, ReplicaPool
from service._work import TensorWork


@pytest.mark.parametrize("ahead, rows, rate, reason, message, retry", [
    (0, 1, None, None, "", 0),
    (90, 10, 100.0, None, "", 0),
    (95, 10, 100.0, "queue_rows",
     ("queue is full: 95 rows ahead, 10 more would pass the limit of 100 rows (MAX_QUEUE_ROWS); "
     "retry in 1 s"), 1),
    (60, 1, 20.0, "queue_wait",
     ("queue is full: the expected wait is 3.00 s, over the limit of 1.8 s "
      "(MAX_QUEUE_SECONDS=2 less 10% for jitter); retry in 3 s"), 3),
    (36, 1, 20.0, None, "", 0),
    (99, 1, None, None, "", 0),
], ids=["empty", "rows-up-to-the-limit", "rows-over", "wait-over", "wait-at-the-limit",
        "rate-unknown-rows-only"])
def test_admission_refuses_past_either_bound_with_the_seconds_to_wait(
        ahead: int, rows: int, rate: float | None, reason: str | None, message: str,
        retry: int) -> None:
    admission = Admission(100, 2.0, 8)
    admission.rate = rate
    if reason is None:
        admission.check(ahead, rows)
        return
    with pytest.raises(QueueFull) as info:
        admission.check(ahead, rows)
    assert (info.value.reason, info.value.message, info.value.retry_after) == (
        reason, message, retry)


def test_the_drain_rate_follows_batches_at_least_half_full() -> None:
    admission = Admission(100, 1.0, 8)
    admission.observe(1, 0.1)  # the first measurement seeds it, whatever its size
    assert admission.rate == pytest.approx(10.0)
    admission.observe(3, 0.001)  # under half of 8 rows: says nothing about capacity
    assert admission.rate == pytest.approx(10.0)
    admission.observe(8, 0.1)
    assert admission.rate == pytest.approx(0.3 * 80 + 0.7 * 10)
    two = Admission(100, 1.0, 8)
    two.observe(8, 0.1, parallel=2)  # two replicas drain the queue side by side
    assert two.rate == pytest.approx(160.0)


def test_the_expected_wait_counts_the_gaps_between_batches_and_the_own_forward_pass() -> None:
    admission = Admission(1000, 1.0, 8)
    admission.observe(8, 0.020, span=0.025)  # 20 ms forward, 5 ms since the previous batch
    assert admission.rate == pytest.approx(320.0)  # 8 rows per 25 ms, not per 20 ms
    assert admission.expected_wait(312) == pytest.approx(312 / 320 + 0.020)
    admission.check(280, 1)  # 0.875 + 0.02 s: within 90% of MAX_QUEUE_SECONDS
    with pytest.raises(QueueFull, match=r"the expected wait is 0\.96 s, over the limit of 0\.9 s"):
        admission.check(300, 1)  # 0.94 s of queue + 0.02 s of its own forward pass


def test_cost_drains_the_queue_for_objects() -> None:
    admission = Admission(1000, 1.0, 64, batch_cost=1000)
    admission.observe(4, 0.5, cost=600)  # few items, but over half a batch's cost
    assert admission.rate == pytest.approx(1200.0)
    with pytest.raises(QueueFull, match="the expected wait is 1.50 s"):
        admission.check(3, 1, cost_ahead=1200, cost=10)


@pytest.mark.parametrize("raw, expected, error", [
    ("2.5", 2.5, ""), ("0", None, ""), (" 1 ", 1.0, ""),
    ("soon", None, ("header 'X-Request-Timeout' has value 'soon': not a number of seconds "
                   "between 0 and 86400 (0: no deadline), e.g. 2.5")),
    ("-1", None, ("header 'X-Request-Timeout' has value '-1': not a number of seconds "
                 "between 0 and 86400 (0: no deadline), e.g. 2.5")),
    ("nan", None, ("header 'X-Request-Timeout' has value 'nan': not a number of seconds "
                  "between 0 and 86400 (0: no deadline), e.g. 2.5")),
], ids=["seconds", "zero-none", "spaces", "word", "negative", "nan"])
def test_parse_timeout(raw: str, expected: float | None, error: str) -> None:
    if error:
        with pytest.raises(ValueError) as info:
            parse_timeout(raw)
        assert str(info.value) == error
    else:
        assert parse_timeout(raw) == expected


class Model:
    """Row sums; sleeps ``seconds`` per pass; raises OutOfMemory above ``fits`` rows."""

    def __init__(self, seconds: float = 0.0, fits: int = 1 << 30) -> None:
        self.input_width = 2
        self.seconds = seconds
        self.fits = fits
        self.batches: list[int] = []

    def setup(self, device: str) -> None:
        pass

    def predict(self, batch: Batch) -> Mapping[str, Sequence[Any]]:
        if batch.rows > self.fits:
            raise OutOfMemory(f"{batch.rows} rows do not fit")
        self.batches.append(batch.rows)
        time.sleep(self.seconds)
        return {"predictions": [sum(row) for row in batch.tolist()]}


def rows(*values: float) -> array[float]:
    return array("f", [v for value in values for v in (value, 0.0)])


@asynccontextmanager
async def batcher_for(model: Model, admission: Admission | None = None,
                      max_wait_s: float = 0.0) -> AsyncIterator[Batcher]:
    """One CPU replica serving ``model`` (its warm-up pass forgotten), and a batcher on it."""
    pool = ReplicaPool([ReplicaSlot("cpu")], lambda: model, CpuOnlyRuntime(), 1, None, 1,
                       lambda: None)
    try:
        await pool.start()
        model.batches.clear()
        yield Batcher(pool, TensorWork(2), 64, max_wait_s, lambda *_: None, admission)
    finally:
        pool.shutdown()


def test_a_request_past_its_deadline_leaves_the_queue_before_its_forward_pass() -> None:
    model = Model(seconds=0.3)

    async def main() -> tuple[Any, Any, float, bool]:
        async with batcher_for(model) as batcher:
            first = asyncio.ensure_future(batcher.submit(rows(1), 1))
            await asyncio.sleep(0.05)  # the first is in its forward pass
            start = time.monotonic()
            late = await asyncio.gather(batcher.submit(rows(2), 1, timeout=0.1),
                                        return_exceptions=True)
            waited = time.monotonic() - start
            running = not first.done()
            return await first, late[0], waited, running

    result, late, waited, running = asyncio.run(main())
    assert result == {"predictions": [1.0]}
    assert isinstance(late, DeadlineExceeded)
    assert str(late) == "the request waited its deadline of 0.1 s in the queue"
    assert waited >= 0.09  # not before its deadline
    assert running  # answered at its deadline, while the batch ahead still ran (not after it)
    assert model.batches == [1]


def test_a_withdrawn_request_never_reaches_the_model() -> None:
    model = Model(seconds=0.2)

    async def main() -> list[Any]:
        async with batcher_for(model) as batcher:
            first = asyncio.ensure_future(batcher.submit(rows(1), 1))
            await asyncio.sleep(0.05)
            gone = batcher.enqueue(rows(2), 1)
            kept = batcher.enqueue(rows(3), 1)
            assert batcher.queued_rows == 3  # two waiting, one running
            batcher.withdraw(gone)
            assert batcher.queued_rows == 2
            return await asyncio.gather(first, gone.future, kept.future, return_exceptions=True)

    first, gone, kept = asyncio.run(main())
    assert (first, kept) == ({"predictions": [1.0]}, {"predictions": [3.0]})
    assert isinstance(gone, Disconnected)
    assert model.batches == [1, 1]


def test_a_full_queue_refuses_at_once_and_counts_the_running_batch() -> None:
    model = Model(seconds=0.2)

    async def main() -> QueueFull:
        async with batcher_for(model, Admission(3, 60.0, 8)) as batcher:
            first = asyncio.ensure_future(batcher.submit(rows(1), 1))
            await asyncio.sleep(0.05)
            queued = batcher.enqueue(rows(1, 2), 2)
            with pytest.raises(QueueFull) as info:
                batcher.enqueue(rows(5), 1)
            await asyncio.gather(first, queued.future)
            batcher.enqueue(rows(5), 1)  # room again once the queue drained
            return info.value

    refused = asyncio.run(main())
    assert (refused.reason, refused.status, refused.retry_after) == ("queue_rows", 503, 1)
    assert refused.message.startswith("queue is full: 3 rows ahead, 1 more")


@pytest.mark.parametrize("fits, batches, error", [
    (1 << 30, [4], ""),
    (2, [2, 2], ""),
    (3, [2, 2], ""),
    (1, [], "2 rows do not fit (also in halves: the batch of 4 rows was retried as 2 + 2)"),
], ids=["fits", "halves-fit", "halves-fit-odd-limit", "halves-fail-too"])
def test_out_of_memory_retries_the_batch_once_in_halves(fits: int, batches: list[int],
                                                        error: str) -> None:
    model = Model(fits=fits)

    async def main() -> list[Any]:
        async with batcher_for(model) as batcher:
            calls = [batcher.submit(rows(1), 1), batcher.submit(rows(2, 3), 2),
                     batcher.submit(rows(4), 1)]
            return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(main())
    assert model.batches == batches
    if error:
        assert all(isinstance(r, OutOfMemory) and r.message == error for r in results)
    else:
        assert results == [{"predictions": [1.0]}, {"predictions": [2.0, 3.0]},
                           {"predictions": [4.0]}]


def test_a_deadline_that_passes_while_the_worker_is_idle_runs_the_request_instead() -> None:
    model = Model()

    async def main() -> Any:
        # a long hold for a fuller batch: the deadline passes during it, behind nobody
        async with batcher_for(model, max_wait_s=0.5) as batcher:
            batcher._wait = 0.5  # as after a heavy forward pass
            return await batcher.submit(rows(7), 1, timeout=1e-9)

    assert asyncio.run(main()) == {"predictions": [7.0]}
    assert model.batches == [1]
