"""The service on a real CUDA device (needs an NVIDIA GPU; skipped with the reason elsewhere)."""

from __future__ import annotations

import random
from array import array
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from service._predictor import Batch
from service._settings import DEFAULT_MODEL_PATH
from tests.conftest import ServerProcess

ServerFactory = Callable[..., ServerProcess]
pytestmark = pytest.mark.gpu


def rows(n: int, seed: int = 0) -> list[list[float]]:
    rng = random.Random(seed)
    return [[float(rng.randint(0, 16)) for _ in range(64)] for _ in range(n)]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_the_torch_predictor_runs_on_cuda_and_agrees_with_the_cpu() -> None:
    from service._torch import TorchModelPredictor

    x = rows(64)
    batch = Batch(array("f", [v for row in x for v in row]), 64, 64)
    outputs: dict[str, Any] = {}
    for device in ("cuda", "cpu"):
        predictor = TorchModelPredictor(DEFAULT_MODEL_PATH)
        predictor.setup(device)
        outputs[device] = predictor.predict(batch)
        assert predictor.info["device"] == ("cuda:0" if device == "cuda" else "cpu")
    for gpu_row, cpu_row in zip(outputs["cuda"]["scores"], outputs["cpu"]["scores"]):
        assert gpu_row == pytest.approx(cpu_row, abs=1e-4)


def assert_rows_alone_match_the_batch(url: str, x: list[list[float]], threads: int) -> None:
    """Each row sent alone, THREADS at a time, gets what it got inside one request of all rows."""
    whole = requests.post(url + "/predict", json={"inputs": x}, timeout=30).json()
    with ThreadPoolExecutor(threads) as pool:
        singles = list(pool.map(lambda row: requests.post(
            url + "/predict", json={"inputs": [row]}, timeout=30).json(), x))
    assert [s["predictions"][0] for s in singles] == whole["predictions"]


def test_auto_picks_the_gpu_and_serves_concurrent_requests(server_factory: ServerFactory) -> None:
    server = server_factory(env={"DEVICE": "auto"})
    metrics = requests.get(server.url + "/metrics", timeout=10).text
    assert 'device="cuda:0"' in metrics
    assert_rows_alone_match_the_batch(server.url, rows(100, seed=1), threads=50)


def test_a_cuda_index_past_the_last_gpu_fails_readiness_with_the_reason(
        server_factory: ServerFactory) -> None:
    server = server_factory(env={"DEVICE": "cuda:99"}, wait=False)
    reply = server.wait_settled(90)
    assert reply is not None and reply.status_code == 503
    assert reply.json()["reason"].startswith("DEVICE=cuda:99 but only ")


def test_two_replicas_on_one_gpu_both_take_batches_and_answer_as_one(
        server_factory: ServerFactory) -> None:
    server = server_factory(env={"DEVICE": "cuda:0", "REPLICAS_PER_DEVICE": "2",
                                 "MAX_BATCH_ROWS": "8"})
    ready = requests.get(server.url + "/readyz", timeout=10).json()
    assert [(r["device"], r["state"]) for r in ready["replicas"]] == [
        ("cuda:0", "ready"), ("cuda:0", "ready")]
    assert_rows_alone_match_the_batch(server.url, rows(200, seed=2), threads=64)
    metrics = requests.get(server.url + "/metrics", timeout=10).text
    for replica in ("0", "1"):
        assert f'predictor_batch_size_count{{device="cuda:0",replica="{replica}"}}' in metrics


def test_device_cuda_puts_a_replica_on_every_visible_gpu(server_factory: ServerFactory) -> None:
    import torch

    server = server_factory(env={"DEVICE": "cuda"})
    ready = requests.get(server.url + "/readyz", timeout=10).json()
    assert [r["device"] for r in ready["replicas"]] == [
        f"cuda:{i}" for i in range(torch.cuda.device_count())]
