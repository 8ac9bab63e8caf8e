"""Several replicas in one app (in-process): the digits model on two CPU replicas, a replica
that hits a device error mid-run, per-replica CPU threads, /readyz, /healthz and the metrics."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, ClassVar

import orjson
import pytest
import torch
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp

from service._cpu import cpu_threads, threads_per_replica
from service._device import AUTO_CPU_REPLICAS
from service._predictor import Batch
from service._settings import DEFAULT_MODEL_PATH
from service._torch import TorchModelPredictor
from tests.conftest import digits_split
from tests.service.asgi import request, wait_ready
from tests.service.test_app_reliability import serve

ILLEGAL = "CUDA error: an illegal memory access was encountered"


def digits_model() -> TorchModelPredictor:
    return TorchModelPredictor(DEFAULT_MODEL_PATH)


async def predict_concurrently(app: ASGIApp, rows: list[list[float]]) -> list[Any]:
    """Single-row requests for the first half, four-row requests for the rest, all at once."""
    half = len(rows) // 2
    bodies = [[row] for row in rows[:half]] + [rows[i:i + 4] for i in range(half, len(rows), 4)]
    replies = await asyncio.gather(*(request(app, "POST", "/predict",
                                             orjson.dumps({"inputs": body})) for body in bodies))
    assert all(r.status == 200 for r in replies), [r.body for r in replies if r.status != 200]
    return [r.json() for r in replies]


def batches_by_replica(registry: CollectorRegistry, replicas: int) -> list[float]:
    return [registry.get_sample_value("predictor_batch_size_count",
                                      {"replica": str(i), "device": "cpu"}) or 0.0
            for i in range(replicas)]


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_two_cpu_replicas_answer_exactly_as_one_and_both_take_batches() -> None:
    rows = digits_split()[1][:240].tolist()
    answers: dict[int, list[Any]] = {}

    def scenario_for(replicas: int) -> Callable[[ASGIApp, CollectorRegistry], Awaitable[None]]:
        async def scenario(app: ASGIApp, registry: CollectorRegistry) -> None:
            assert (await wait_ready(app)).status == 200
            answers[replicas] = [await predict_concurrently(app, rows) for _ in range(3)]
            batches = batches_by_replica(registry, replicas)
            assert all(n > 0 for n in batches), batches  # every replica took batches
        return scenario

    serve(digits_model(), scenario_for(1), devices=("cpu",))
    serve(digits_model, scenario_for(2), devices=("cpu", "cpu"), replicas_per_device=1)
    one, two = answers[1], answers[2]
    assert [[a["predictions"] for a in wave] for wave in two] == [
        [a["predictions"] for a in wave] for wave in one]
    # the same weights and rows give the same float32 scores, however the rows were batched
    flat = [(x, y) for w1, w2 in zip(one, two) for a, b in zip(w1, w2)
            for r1, r2 in zip(a["scores"], b["scores"]) for x, y in zip(r1, r2)]
    assert all(x == y for x, y in flat), sum(x != y for x, y in flat)


class FailsOnce:
    """Replica 0's instance (set up in its thread) raises torch's own CUDA error from its third
    batch on."""

    def __init__(self) -> None:
        self.input_width = 2
        self.batches = 0
        self.doomed = False

    def setup(self, device: str) -> None:
        self.doomed = threading.current_thread().name.startswith("inference-0_")

    def predict(self, batch: Batch) -> Mapping[str, Sequence[Any]]:
        if any(batch.values):  # not the warm-up
            self.batches += 1
            if self.doomed and self.batches >= 3:
                raise torch.AcceleratorError(f"{ILLEGAL}\nCompile with TORCH_USE_CUDA_DSA")
        threading.Event().wait(0.002)
        return {"predictions": [row[0] * 10 + row[1] for row in batch.tolist()]}


def test_a_replica_with_a_device_error_mid_run_is_failed_and_its_callers_answered() -> None:
    async def scenario(app: ASGIApp, registry: CollectorRegistry) -> None:
        await wait_ready(app)
        for _ in range(4):
            replies = await asyncio.gather(*(request(app, "POST", "/predict", orjson.dumps(
                {"inputs": [[i, 1]]})) for i in range(40)))
            assert [(r.status, r.json()) for r in replies] == [
                (200, {"predictions": [i * 10 + 1]}) for i in range(40)]
        ready = await request(app, "GET", "/readyz")
        alive = await request(app, "GET", "/healthz")
        replicas = [{"replica": 0, "device": "cpu", "state": "failed",
                     "reason": f"device error: {ILLEGAL}"},
                    {"replica": 1, "device": "cpu", "state": "ready", "reason": None}]
        assert (ready.status, ready.json()) == (200, {"status": "ready", "replicas": replicas})
        assert (alive.status, alive.json()) == (200, {"status": "ok", "replicas": replicas})
        assert {s: registry.get_sample_value("predictor_replicas", {"state": s})
                for s in ("starting", "ready", "failed")} == {
                    "starting": 0, "ready": 1, "failed": 1}
        assert batches_by_replica(registry, 2)[0] == 2  # its third batch never finished

    serve(FailsOnce, scenario, devices=("cpu",), replicas_per_device=2, max_batch_rows=8)


def test_when_every_replica_failed_predict_and_readyz_are_503() -> None:
    class AllFail(FailsOnce):
        def setup(self, device: str) -> None:
            self.doomed = True

    async def scenario(app: ASGIApp, registry: CollectorRegistry) -> None:
        await wait_ready(app)
        # one request at a time: replicas take turns; each fails at its third batch, the
        # fifth request fails on both (its retry too), the sixth finds none ready
        replies = [await request(app, "POST", "/predict", b'{"inputs": [[1, 1]]}')
                   for _ in range(6)]
        ready = await request(app, "GET", "/readyz")
        alive = await request(app, "GET", "/healthz")
        assert [r.status for r in replies] == [200, 200, 200, 200, 503, 503]
        assert replies[4].json()["detail"] in {  # whichever replica took its retry
            f"model is not ready: device error on replica {i} (cpu), after a retry: {ILLEGAL}"
            for i in (0, 1)}
        assert replies[5].json() == {"detail": "model is not ready (failed)"}
        assert (ready.status, ready.json()["status"]) == (503, "failed")
        assert ready.json()["reason"] == f"device error: {ILLEGAL}"
        assert (alive.status, alive.json()["status"]) == (503, "failed")
        assert registry.get_sample_value("predictor_replicas", {"state": "failed"}) == 2

    serve(AllFail, scenario, devices=("cpu", "cpu"), replicas_per_device=1)


class Threads:
    """Records torch's intra-op thread count in the thread its batches run on."""

    seen: ClassVar[set[tuple[str, int]]] = set()

    def __init__(self) -> None:
        self.input_width = 2

    def setup(self, device: str) -> None:
        pass

    def predict(self, batch: Batch) -> Mapping[str, Sequence[Any]]:
        Threads.seen.add((threading.current_thread().name, torch.get_num_threads()))
        return {"predictions": [0] * batch.rows}


@pytest.mark.parametrize("entries, per_device", [
    (1, 1), (2, 1), (3, 1), (1, None),
], ids=["one", "two", "three", "auto-one-per-cpu"])
def test_cpu_replicas_share_the_cpu_quota_threads_each_in_its_own_thread(
        entries: int, per_device: int | None) -> None:
    Threads.seen = set()

    async def scenario(app: ASGIApp, registry: CollectorRegistry) -> None:
        await wait_ready(app)

    serve(Threads, scenario, devices=("cpu",) * entries, replicas_per_device=per_device)
    replicas = entries if per_device else min(AUTO_CPU_REPLICAS, cpu_threads())
    share = threads_per_replica(cpu_threads(), replicas)
    assert Threads.seen == {(f"inference-{i}_0", share) for i in range(replicas)}


def test_one_predictor_instance_serves_one_replica_and_says_so_for_the_others() -> None:
    async def scenario(app: ASGIApp, registry: CollectorRegistry) -> None:
        ready = (await wait_ready(app)).json()
        assert [(r["state"], r["reason"]) for r in ready["replicas"]] == [
            ("ready", None),
            ("failed", ("this service was given one predictor instance, which serves one "
                        "replica (hint: pass create_app a class or a function that makes a new "
                        "predictor, one per replica)"))]

    serve(Threads(), scenario, devices=("cpu", "cpu"))
