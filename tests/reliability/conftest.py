"""Real service processes on 127.0.0.1 for the reliability suite: the slow test predictor, its
metrics and its memory, read from outside as a user would."""

from __future__ import annotations

from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ServerProcess

SLOW = "tests.service.slow_predictor:SlowEcho"
ROW = b'{"inputs": [[1.0, 2.0]]}'


def slow_env(seconds: float, batch_rows: int, **more: str) -> dict[str, str]:
    """The slow echo predictor: every forward pass takes ``seconds``, at most ``batch_rows``."""
    return {"PREDICTOR": SLOW, "SLOW_SECONDS": str(seconds), "MAX_BATCH_ROWS": str(batch_rows),
            "REPLICAS_PER_DEVICE": "1", "DEVICE": "cpu", "LOG_LEVEL": "warning", **more}


def sample(server: ServerProcess, name: str, labels: dict[str, str] | None = None) -> float:
    """One sample of the live ``/metrics`` (0 when absent)."""
    text = requests.get(server.url + "/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and (labels is None or s.labels == labels):
                return float(s.value)
    return 0.0


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
