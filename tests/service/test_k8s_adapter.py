"""The prometheus-adapter rule `launcher render k8s` writes, run against a real Prometheus
scraping a real service: its seriesQuery finds the service's series with the namespace and pod
labels a Kubernetes scrape gives them, its name rule maps that series to the HPA's metric, and
its metricsQuery, expanded as the adapter expands it for one pod, is PromQL Prometheus answers
with that pod's value. (No adapter runs here: it needs a Kubernetes API server.)"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest
import requests

from launcher._k8s import METRIC, adapter_rules
from tests.service.test_metrics_live import ROW, ServerFactory
from tests.service.test_prometheus import Prometheus, prometheus_factory

__all__ = ["prometheus_factory"]  # a fixture: imported so that pytest finds it for this module


pytestmark = pytest.mark.slow

# What the annotation-based scrape job (or a ServiceMonitor) attaches to every pod's series.
POD = {"namespace": "inference", "pod": "gpu-launcher-7d9f8-abcde"}


def _expand(template: str, series: str) -> str:
    """prometheus-adapter's template for a per-pod query of one pod (docs/config.md)."""
    matchers = ",".join(f'{k}="{v}"' for k, v in POD.items())
    return (template.replace("<<.Series>>", series).replace("<<.LabelMatchers>>", matchers)
            .replace("<<.GroupBy>>", "pod"))


def test_the_adapter_rule_serves_the_hpa_metric_per_pod(
        server_factory: ServerFactory, prometheus_factory: Callable[..., Prometheus]) -> None:
    (rule,) = adapter_rules()["rules"]
    server = server_factory(env={"DEVICE": "cpu"})
    prometheus = prometheus_factory(f"127.0.0.1:{server.port}", labels=POD)
    answer = requests.post(server.url + "/predict", json={"inputs": [ROW]}, timeout=10)
    assert answer.status_code == 200, answer.text

    deadline = time.monotonic() + 30
    series: list[dict[str, str]] = []
    while time.monotonic() < deadline and not series:
        found = requests.get(prometheus.url + "/api/v1/series",
                             params={"match[]": rule["seriesQuery"]}, timeout=5).json()
        assert found["status"] == "success", found
        series = found["data"]
        time.sleep(0.5)
    assert [s["__name__"] for s in series] == [METRIC], series
    # every label the rule maps to a Kubernetes resource is on the series
    assert {k: series[0][k] for k in rule["resources"]["overrides"]} == POD
    assert re.sub(rule["name"]["matches"], rule["name"]["as"], series[0]["__name__"]) == METRIC

    query = _expand(rule["metricsQuery"], series[0]["__name__"])
    value = prometheus.wait_for(query, lambda v: v >= 0)
    (result,) = prometheus.query(query)
    assert result["metric"] == {"pod": POD["pod"]} and value < 100
