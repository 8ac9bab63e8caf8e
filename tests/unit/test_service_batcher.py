from __future__ import annotations

import asyncio
import threading
import time
from array import array
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest

from service._batcher import Batcher, InferenceFailed
from service._device import ReplicaSlot
from service._predictor import Batch
from service._replicas import CpuOnlyRuntime, ReplicaPool
from service._work import TensorWork


class Recorder:
    """predict(): row sums as predictions; records batch sizes and the thread it ran on."""

    def __init__(self, fail: bool = False) -> None:
        self.input_width = 2
        self.batches: list[int] = []
        self.threads: set[str] = set()
        self.observed: list[tuple[int, int]] = []
        self.fail = fail

    def setup(self, device: str) -> None:
        pass

    def predict(self, batch: Batch) -> Mapping[str, Sequence[Any]]:
        self.batches.append(batch.rows)
        self.threads.add(threading.current_thread().name)
        if self.fail and batch.rows > 0 and batch.values[0] != 0:  # warm-up rows are zeros
            raise RuntimeError("model exploded")
        return {"predictions": [sum(row) for row in batch.tolist()]}

    def observe(self, rows: int, queue_seconds: Sequence[float], seconds: float, replica: int,
                device: str) -> None:
        self.observed.append((rows, len(queue_seconds)))


@asynccontextmanager
async def replicas(*predictors: Any) -> AsyncIterator[ReplicaPool]:
    """A started pool of CPU replicas, one per predictor (in order); warm-up batches forgotten."""
    made = list(reversed(predictors))
    pool = ReplicaPool([ReplicaSlot("cpu")] * len(predictors), made.pop, CpuOnlyRuntime(), 2,
                       None, 1, lambda: None)
    try:
        await pool.start()
        for predictor in predictors:
            predictor.batches.clear()
            predictor.threads.clear()
        yield pool
    finally:
        pool.shutdown()


def run(recorder: Recorder, requests: list[list[list[float]]], max_rows: int,
        max_wait_s: float = 0.0) -> list[Any]:
    async def main() -> list[Any]:
        async with replicas(recorder) as pool:
            batcher = Batcher(pool, TensorWork(2), max_rows, max_wait_s, recorder.observe)
            calls = [batcher.submit(array("f", [v for row in rows for v in row]), len(rows))
                     for rows in requests]
            return await asyncio.gather(*calls, return_exceptions=True)

    return asyncio.run(main())


@pytest.mark.parametrize("requests, max_rows, max_wait_s, batches", [
    ([[[1, 1]]], 8, 0.0, [1]),
    ([[[i, 1]] for i in range(20)], 8, 0.0, [8, 8, 4]),
    ([[[i, 1]] for i in range(20)], 64, 0.0, [20]),
    ([[[i, 1]] for i in range(20)], 64, 0.01, [20]),
    ([[[1, 1]] * 3, [[2, 2]] * 3, [[3, 3]] * 3], 4, 0.0, [3, 3, 3]),
    ([[[1, 1]] * 10, [[2, 2]]], 4, 0.0, [10, 1]),
], ids=["single", "split-by-max-rows", "same-tick-merged", "merged-by-max-wait",
        "requests-never-split", "oversized-request-alone"])
def test_batches_merge_requests_and_each_caller_gets_its_rows(
        requests: list[list[list[float]]], max_rows: int, max_wait_s: float,
        batches: list[int]) -> None:
    recorder = Recorder()
    results = run(recorder, requests, max_rows, max_wait_s)
    assert results == [{"predictions": [float(sum(r)) for r in rows]} for rows in requests]
    assert recorder.batches == batches
    assert recorder.threads == {"inference-0_0"}  # the replica's worker thread, off the loop
    assert [rows for rows, _ in recorder.observed] == batches
    assert sum(n for _, n in recorder.observed) == len(requests)


def test_a_failing_forward_pass_fails_every_caller_in_the_batch() -> None:
    results = run(Recorder(fail=True), [[[1, 1]], [[2, 2]]], 8)
    assert [str(r) for r in results] == ["inference failed: RuntimeError: model exploded"] * 2
    assert all(isinstance(r, InferenceFailed) for r in results)


@pytest.mark.parametrize("forward_s, held_s", [(0.2, 0.1), (0.0, 0.0)],
                         ids=["heavy-model-held-half-a-forward", "light-model-never-held"])
def test_a_short_batch_waits_for_the_last_load_only_when_the_forward_is_heavy(
        forward_s: float, held_s: float) -> None:
    recorder = Recorder()
    predict = recorder.predict

    def slow_predict(batch: Batch) -> Mapping[str, Sequence[Any]]:
        time.sleep(forward_s)
        return predict(batch)

    recorder.predict = slow_predict  # type: ignore[method-assign]

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        async with replicas(recorder) as pool:
            batcher = Batcher(pool, TensorWork(2), 64, 0.3, recorder.observe)

            async def timed(n: int) -> float:
                start = loop.time()
                await asyncio.gather(*(batcher.submit(array("f", [1, 1]), 1) for _ in range(n)))
                return loop.time() - start - forward_s

            # lone (target 1), four at once (target 4 next), one (held), one (target 1 again)
            return [await timed(1), await timed(4), await timed(1), await timed(1)]

    lone, four, after_load, lone_again = asyncio.run(main())
    assert recorder.batches == [1, 4, 1, 1]
    assert max(lone, four, lone_again) < 0.05
    assert held_s - 0.01 <= after_load < held_s + 0.05
