"""GPU telemetry from the real NVML (needs an NVIDIA GPU; skipped with the reason elsewhere)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
import requests
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from service._gpu_metrics import NvmlCollector
from service.nvml import load_nvml
from tests.conftest import ServerProcess

ServerFactory = Callable[..., ServerProcess]
pytestmark = pytest.mark.gpu

ROW = [8.0] * 64  # one row of the built-in digits model


def test_real_nvml_reports_every_gpu_without_errors() -> None:
    registry = CollectorRegistry()
    registry.register(NvmlCollector(load_nvml))
    count = load_nvml().nvmlDeviceGetCount()
    assert registry.get_sample_value("predictor_gpus") == count
    assert registry.get_sample_value("predictor_gpu_scrape_errors_total") == 0
    body = [f for f in registry.collect() if f.name == "predictor_gpu_memory_total_bytes"]
    assert len(body) == 1 and len(body[0].samples) >= count
    assert all(sample.value > 0 for sample in body[0].samples)


def gpu_samples(body: str, name: str) -> list[float]:
    return [s.value for f in text_string_to_metric_families(body) for s in f.samples
            if s.name == name]


def test_scrape_under_load_shows_gpu_busy(server_factory: ServerFactory) -> None:
    server = server_factory(env={"DEVICE": "cuda"})
    stop = threading.Event()

    def load() -> None:
        with requests.Session() as session:
            deadline = time.monotonic() + 60
            while not stop.is_set() and time.monotonic() < deadline:
                session.post(server.url + "/predict", json={"inputs": [ROW] * 256}, timeout=10)

    threads = [threading.Thread(target=load) for _ in range(8)]
    for thread in threads:
        thread.start()
    busy: list[float] = []
    try:
        for _ in range(60):  # up to ~30 s of scrapes, every 0.5 s
            body = requests.get(server.url + "/metrics", timeout=10).text
            busy = gpu_samples(body, "predictor_gpu_utilization_ratio")
            if any(value > 0 for value in busy):
                break
            time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    print(body)  # the note records this scrape (pytest -s)
    assert any(value > 0 for value in busy), busy
    assert any(value > 0 for value in gpu_samples(body, "predictor_gpu_memory_used_bytes"))
    info = [s.labels for f in text_string_to_metric_families(body) for s in f.samples
            if s.name == "predictor_model_info"]
    assert len(info) == 1 and info[0]["device"].startswith("cuda"), info
