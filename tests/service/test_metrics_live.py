"""/metrics as promtool and a scraper see it: a real `python -m service`, and GPU series."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest
import requests
from prometheus_client import CollectorRegistry

from service._metrics import ServiceMetrics
from service.nvml import NvmlUnavailable, load_nvml
from tests.conftest import ServerProcess, tool_path
from tests.fakenvml import NOT_SUPPORTED, FakeGpu, FakeNvml, loader

ServerFactory = Callable[..., ServerProcess]
pytestmark = pytest.mark.slow


def require_tool(name: str) -> str:
    """The tool's path; missing: fail in CI (scripts/setup --tools installs it), else skip."""
    return tool_path(name, "scripts/setup --tools (Debian package 'prometheus')")


ROW = [0.0] * 64  # one row of the built-in digits model


def host_gpus() -> int:
    """What the service's collector should report on this host."""
    try:
        return int(load_nvml().nvmlDeviceGetCount())
    except NvmlUnavailable:
        return 0


def traffic(url: str, count: int) -> None:
    """``count`` predictions and readiness checks, then one unknown path."""
    with requests.Session() as session:
        for _ in range(count):
            assert session.get(url + "/readyz", timeout=5).status_code == 200
            response = session.post(url + "/predict", json={"inputs": [ROW, ROW]}, timeout=10)
            assert response.status_code == 200, response.text
        assert session.get(url + "/no-such-page", timeout=5).status_code == 404


def test_promtool_finds_nothing_on_a_live_scrape(server_factory: ServerFactory) -> None:
    promtool = require_tool("promtool")
    server = server_factory()
    traffic(server.url, 5)
    response = requests.get(server.url + "/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    check = subprocess.run([promtool, "check", "metrics"], input=response.content,
                           capture_output=True, timeout=30, check=False)
    assert (check.returncode, check.stdout, check.stderr) == (0, b"", b""), response.text


def test_promtool_finds_nothing_on_gpu_series() -> None:
    """The GPU families this host cannot produce live: two GPUs, one with a MIG slice."""
    promtool = require_tool("promtool")
    mig = FakeGpu(name="NVIDIA A100 MIG 1g.10gb", uuid="MIG-1", utilization_gpu=NOT_SUPPORTED,
                  power_mw=NOT_SUPPORTED, temperature_c=NOT_SUPPORTED)
    gpus = [FakeGpu(uuid="GPU-0", mig_mode=(1, 1), mig_slices=[mig]),
            FakeGpu(uuid="GPU-1", processes=[(4242, 1 << 30)])]
    metrics = ServiceMetrics(CollectorRegistry(), loader(FakeNvml(gpus)))
    metrics.set_model_info(model="digits", device="cuda:0", torch_version="2.13.0")
    metrics.observe_batch(2, [0.001, 0.002], 0.003, 0, "cuda:0")
    body, _ = metrics.render()
    assert b'predictor_gpu_memory_used_bytes{gpu="0/0"' in body
    check = subprocess.run([promtool, "check", "metrics"], input=body,
                           capture_output=True, timeout=30, check=False)
    assert (check.returncode, check.stdout, check.stderr) == (0, b"", b""), body.decode()


def test_live_scrape_counts_requests_by_route_and_reports_gpus(
        server_factory: ServerFactory) -> None:
    server = server_factory(env={"DEVICE": "cpu"})
    traffic(server.url, 3)
    body = requests.get(server.url + "/metrics", timeout=10).text
    lines = body.splitlines()
    assert 'predictor_requests_total{code="200",endpoint="/predict"} 3.0' in lines
    assert 'predictor_requests_total{code="200",endpoint="/readyz"}' in body
    assert 'predictor_requests_total{code="404",endpoint="other"} 1.0' in lines
    assert 'predictor_request_duration_seconds_count{endpoint="/predict"} 3.0' in lines
    # 3 requests of 2 rows, however batched, over however many CPU replicas
    assert sum(float(line.split()[1]) for line in lines
               if line.startswith('predictor_batch_size_sum{device="cpu",replica="')) == 6.0
    assert 'predictor_replicas{state="failed"} 0.0' in lines
    assert "predictor_queue_duration_seconds_count 3.0" in lines  # one wait per request
    assert "predictor_in_flight_requests 1.0" in lines  # the scrape itself is in flight
    assert f"predictor_gpus {host_gpus():.1f}" in lines  # 0 here: no NVIDIA driver
    assert "predictor_gpu_scrape_errors_total 0.0" in lines
    info = [line for line in lines if line.startswith("predictor_model_info{")]
    assert len(info) == 1 and 'device="cpu"' in info[0], info
