"""A real Prometheus server scrapes a real service every second; PromQL over its HTTP API."""

from __future__ import annotations

import math
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import free_port, stop_process
from tests.service.test_metrics_live import ROW, ServerFactory, host_gpus, require_tool

pytestmark = pytest.mark.slow

TRAFFIC = 40


class Prometheus:
    def __init__(self, url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
        self.url, self.proc, self.log_path = url, proc, log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def query(self, promql: str) -> list[dict[str, Any]]:
        response = requests.get(self.url + "/api/v1/query", params={"query": promql}, timeout=5)
        body = response.json()
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def wait_for(self, promql: str, ok: Callable[[float], bool], timeout: float = 30.0) -> float:
        """Poll an instant query until its one value satisfies ``ok`` (bounded in time)."""
        deadline = time.monotonic() + timeout
        seen: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"prometheus exited:\n{self.log()}"
            seen = self.query(promql)
            if len(seen) == 1 and ok(float(seen[0]["value"][1])):
                return float(seen[0]["value"][1])
            time.sleep(0.5)
        raise AssertionError(f"{promql} never satisfied within {timeout}s: {seen}\n{self.log()}")


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator[Callable[..., Prometheus]]:
    """Start Prometheus on a free loopback port scraping ``target`` (its series carrying
    ``labels`` too); stopped by its PID."""
    binary = require_tool("prometheus")
    started: list[subprocess.Popen[bytes]] = []

    def start(target: str, labels: dict[str, str] | None = None) -> Prometheus:
        config = tmp_path / "prometheus.yml"
        extra = "".join(f"\n          {k}: '{v}'" for k, v in (labels or {}).items())
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            "scrape_configs:\n  - job_name: predictor\n"
            f"    static_configs:\n      - targets: ['{target}']\n"
            + (f"        labels:{extra}\n" if extra else ""))
        port = free_port()
        log_path = tmp_path / "prometheus.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{port}"],
                cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
        started.append(proc)
        prometheus = Prometheus(f"http://127.0.0.1:{port}", proc, log_path)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"prometheus exited:\n{prometheus.log()}"
            try:
                if requests.get(prometheus.url + "/-/ready", timeout=1).status_code == 200:
                    return prometheus
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise AssertionError(f"prometheus not ready in 60s:\n{prometheus.log()}")

    yield start
    for proc in started:
        stop_process(proc)


def test_prometheus_scrapes_the_service_and_answers_promql(
        server_factory: ServerFactory, prometheus_factory: Callable[[str], Prometheus]) -> None:
    server = server_factory(env={"DEVICE": "cpu"})
    prometheus = prometheus_factory(f"127.0.0.1:{server.port}")
    predict = requests.post(server.url + "/predict", json={"inputs": [ROW]}, timeout=10)
    assert predict.status_code == 200, predict.text
    prometheus.wait_for('up{job="predictor"}', lambda up: up == 1)
    # the /predict series are scraped once before the traffic, so rate() sees it arrive
    prometheus.wait_for('predictor_requests_total{endpoint="/predict"}', lambda total: total == 1)
    with requests.Session() as session:
        for _ in range(TRAFFIC):
            response = session.post(server.url + "/predict", json={"inputs": [ROW]}, timeout=10)
            assert response.status_code == 200, response.text
    served = prometheus.wait_for(
        'sum(predictor_requests_total{endpoint="/predict",code="200"})',
        lambda total: total >= TRAFFIC + 1)
    assert served == TRAFFIC + 1
    p99 = prometheus.wait_for(
        "histogram_quantile(0.99, sum by (le) "
        '(rate(predictor_request_duration_seconds_bucket{endpoint="/predict"}[1m])))',
        lambda value: not math.isnan(value))
    assert 0 < p99 <= 10
    rows = prometheus.wait_for("sum(predictor_batch_size_sum)", lambda total: total >= TRAFFIC + 1)
    assert rows == TRAFFIC + 1  # one row per request, however the batcher grouped them
    assert prometheus.wait_for("predictor_gpus", lambda gpus: gpus >= 0) == host_gpus()
