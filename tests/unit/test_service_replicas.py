"""The replica pool with the batcher: one queue, batches to idle replicas, device errors."""

from __future__ import annotations

import asyncio
import threading
import time
from array import array
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from service._batcher import Batcher, NoReplica
from service._device import DeviceError, DeviceFailure, ReplicaSlot
from service._predictor import Batch
from service._replicas import CpuOnlyRuntime, ReplicaPool
from service._work import TensorWork


class Sums:
    """Row sums; sleeps ``seconds`` per batch; raises ``error`` from its ``fail_at``-th batch
    on (warm-up batches, all zeros, do not count)."""

    def __init__(self, seconds: float = 0.0, fail_at: int | None = None,
                 error: BaseException | None = None, width: int = 2) -> None:
        self.input_width = width
        self.seconds = seconds
        self.fail_at = fail_at
        self.error = error or DeviceFailure("GPU is lost")
        self.batches: list[int] = []
        self.threads: set[str] = set()
        self.device = ""

    def setup(self, device: str) -> None:
        self.device = device

    def predict(self, batch: Batch) -> Mapping[str, Sequence[Any]]:
        if any(batch.values):
            self.batches.append(batch.rows)
            self.threads.add(threading.current_thread().name)
            if self.fail_at is not None and len(self.batches) >= self.fail_at:
                raise self.error
        time.sleep(self.seconds)
        return {"predictions": [sum(row) for row in batch.tolist()]}


def pool_of(predictors: list[Any], devices: Sequence[str | ReplicaSlot] | None = None,
            changes: list[dict[str, int]] | None = None) -> ReplicaPool:
    def make() -> Any:  # replica i (its thread is inference-i_0) gets predictors[i]
        item = predictors[int(threading.current_thread().name.split("-")[1].split("_")[0])]
        if isinstance(item, Exception):
            raise item
        return item

    slots = [d if isinstance(d, ReplicaSlot) else ReplicaSlot(d)
             for d in (devices or ["cpu"] * len(predictors))]
    pool: ReplicaPool

    def changed() -> None:
        if changes is not None:
            changes.append(pool.counts())

    pool = ReplicaPool(slots, make, CpuOnlyRuntime(), 2, None, 4, changed)
    return pool


def serve(pool: ReplicaPool, requests: list[list[float]], waves: int = 1,
          max_rows: int = 8) -> list[Any]:
    """Start the pool, then send ``requests`` (single rows) ``waves`` times, each wave at once."""

    async def main() -> list[Any]:
        try:
            await pool.start()
            assert pool.width is not None
            batcher = Batcher(pool, TensorWork(pool.width), max_rows, 0.0, lambda *_: None)
            results: list[Any] = []
            for _ in range(waves):
                results += await asyncio.gather(
                    *(batcher.submit(array("f", row), 1) for row in requests),
                    return_exceptions=True)
            return results
        finally:
            pool.shutdown()

    return asyncio.run(main())


ROWS = [[float(i), 1.0] for i in range(1, 25)]
ANSWERS = [{"predictions": [row[0] + 1.0]} for row in ROWS]


def test_two_replicas_both_take_batches_under_concurrent_load_each_caller_gets_its_rows() -> None:
    first, second = Sums(seconds=0.02), Sums(seconds=0.02)
    results = serve(pool_of([first, second]), ROWS, waves=3)
    assert results == ANSWERS * 3
    assert first.batches and second.batches
    assert sum(first.batches) + sum(second.batches) == 3 * len(ROWS)
    assert (first.threads, second.threads) == ({"inference-0_0"}, {"inference-1_0"})
    assert (first.device, second.device) == ("cpu", "cpu")


def test_a_device_error_fails_the_replica_and_its_batch_is_answered_by_the_other() -> None:
    changes: list[dict[str, int]] = []
    broken, healthy = Sums(seconds=0.01, fail_at=2), Sums(seconds=0.01)
    pool = pool_of([broken, healthy], changes=changes)
    results = serve(pool, ROWS, waves=3)
    assert results == ANSWERS * 3
    assert pool.health() == [
        {"replica": 0, "device": "cpu", "state": "failed", "reason": "device error: GPU is lost"},
        {"replica": 1, "device": "cpu", "state": "ready", "reason": None}]
    assert pool.status == "ready"
    assert changes[-1] == {"starting": 0, "ready": 1, "failed": 1}
    assert len(broken.batches) == 2  # nothing after it failed


def test_a_batch_whose_retry_fails_too_is_refused_and_then_everything_is() -> None:
    pool = pool_of([Sums(fail_at=1), Sums(fail_at=1, error=DeviceFailure("Xid 79"))])
    results = serve(pool, ROWS[:2])
    assert [type(r) for r in results] == [NoReplica, NoReplica]
    assert {r.message for r in results} <= {
        "device error on replica 1 (cpu), after a retry: Xid 79",
        "device error on replica 0 (cpu), after a retry: GPU is lost",
        "every replica failed: device error: GPU is lost; device error: Xid 79"}
    assert pool.status == "failed"
    assert pool.reason() == "device error: GPU is lost; device error: Xid 79"


def test_an_error_of_the_model_fails_the_callers_but_not_the_replica() -> None:
    pool = pool_of([Sums(fail_at=1, error=ValueError("bad row"))])
    results = serve(pool, ROWS[:1])
    assert [str(r) for r in results] == ["inference failed: ValueError: bad row"]
    assert pool.status == "ready"


def test_a_device_error_on_a_gpu_fails_every_replica_on_that_gpu() -> None:
    pool = pool_of([Sums(), Sums(), Sums()], ["cuda:0", "cuda:1", "cuda:0"])
    asyncio.run(pool.start())
    pool.shutdown()
    assert pool.device_failed(pool.replicas[0], RuntimeError("a bug")) is None
    assert pool.device_failed(pool.replicas[0], DeviceFailure("GPU is lost")) == "GPU is lost"
    assert [(r.state, r.reason) for r in pool.replicas] == [
        ("failed", "device error: GPU is lost"), ("ready", None),
        ("failed", "device error on replica 0 (cuda:0): GPU is lost")]


def test_take_spreads_batches_over_devices_first_then_over_replicas() -> None:
    pool = pool_of([Sums(), Sums(), Sums()], ["cuda:0", "cuda:0", "cuda:1"])
    asyncio.run(pool.start())
    pool.shutdown()
    for replica in pool.replicas:  # idle since they got ready: in index order here
        replica.idle_since = replica.index
    taken = [pool.take(), pool.take(), pool.take(), pool.take()]
    assert [r.index if r else None for r in taken] == [0, 2, 1, None]
    assert taken[1] is not None
    pool.release(taken[1])
    assert pool.take() is taken[1]


@pytest.mark.parametrize("predictors, slots, health", [
    ([Sums(), RuntimeError("weights are corrupt")], None,
     [("ready", None), ("failed", "weights are corrupt")]),
    # the first replica to get ready settles the width: either may be first
    ([Sums(), Sums(width=3)], None,
     ([("ready", None), ("failed", "its input width is 3, the other replicas' is 2")],
      [("failed", "its input width is 2, the other replicas' is 3"), ("ready", None)])),
    ([Sums()], ["cpu", ReplicaSlot("cuda:0", DeviceError("no GPU here", "set DEVICE=cpu"))],
     [("ready", None), ("failed", "no GPU here (hint: set DEVICE=cpu)")]),
], ids=["setup-raises", "width-differs", "device-unusable"])
def test_a_replica_that_cannot_start_is_failed_and_the_others_serve(
        predictors: list[Any], slots: list[Any] | None, health: Any) -> None:
    pool = pool_of(predictors, slots or ["cpu"] * len(predictors))
    outcomes = health if isinstance(health, tuple) else (health,)
    results = serve(pool, ROWS[:3])
    seen = [(r["state"], r["reason"]) for r in pool.health()]
    assert seen in outcomes
    if seen == outcomes[0]:
        assert results == ANSWERS[:3]


def test_a_burst_is_shared_out_over_the_idle_replicas() -> None:
    first, second = Sums(seconds=0.05), Sums(seconds=0.05)
    assert serve(pool_of([first, second]), ROWS[:20], max_rows=64) == ANSWERS[:20]
    assert (first.batches, second.batches) == ([10], [10])


class SlowSetup(Sums):
    """Sums whose setup takes a while and counts how many setups run at once."""

    running = 0
    most = 0
    lock = threading.Lock()

    def setup(self, device: str) -> None:
        with SlowSetup.lock:
            SlowSetup.running += 1
            SlowSetup.most = max(SlowSetup.most, SlowSetup.running)
        time.sleep(0.05)
        with SlowSetup.lock:
            SlowSetup.running -= 1
        super().setup(device)


def test_replicas_set_up_one_at_a_time_and_then_serve_side_by_side() -> None:
    # Model loaders are not thread-safe (torch.jit.load twice at once failed a replica)
    SlowSetup.running = SlowSetup.most = 0
    predictors = [SlowSetup(seconds=0.02) for _ in range(3)]
    pool = pool_of(list(predictors))
    answers = serve(pool, [[1.0, 2.0]] * 12)
    assert SlowSetup.most == 1
    assert pool.ready == 3 and answers == [{"predictions": [3.0]}] * 12
