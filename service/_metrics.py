"""Prometheus metrics: requests and batching (pushed by the service) and GPU telemetry (pulled
from NVML by :class:`NvmlCollector` at scrape time, no polling thread).

Everything is registered on the ``CollectorRegistry`` passed in, so tests build fresh registries
and read samples with ``registry.get_sample_value``. Units are base units: seconds, bytes,
watts, joules, celsius, and ratios 0-1; counters end in ``_total``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service._admission import REASONS
from service._gpu_metrics import NvmlCollector
from service._replicas import REPLICA_STATES
from service.nvml import load_nvml

__all__ = [
    "BATCH_SIZE_BUCKETS",
    "OTHER_ENDPOINT",
    "REQUEST_BUCKETS",
    "NvmlCollector",
    "ServiceMetrics",
    "label_name",
]

# An unmatched path (404s, scanners) is counted under one label value: labels stay bounded.
OTHER_ENDPOINT = "other"
# 0.25 ms .. 10 s: a cached CPU forward pass and a cold GPU batch both land in a real bucket.
REQUEST_BUCKETS = (
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

_NOT_LABEL_CHARS = re.compile(r"[^A-Za-z0-9_]")


class ServiceMetrics:
    """The service's metrics on one registry; GPU telemetry too unless ``nvml_loader`` is None."""

    def __init__(self, registry: CollectorRegistry,
                 nvml_loader: Callable[[], Any] | None = load_nvml) -> None:
        # `*_created` gauges double the series and Prometheus' text parser has no use for them;
        # process-wide, but this service is the only metrics user in its process.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry
        self._requests = Counter(
            "predictor_requests", "HTTP requests answered, by route and status code.",
            ("endpoint", "code"), registry=registry)
        self._duration = Histogram(
            "predictor_request_duration_seconds",
            "Time from request received to response body sent, by route.",
            ("endpoint",), buckets=REQUEST_BUCKETS, registry=registry)
        self._in_flight = Gauge(
            "predictor_in_flight_requests", "HTTP requests being handled now.", registry=registry)
        self._queue = Histogram(
            "predictor_queue_duration_seconds",
            "Time a request waited in the batching queue before its forward pass.",
            buckets=REQUEST_BUCKETS, registry=registry)
        self._inference = Histogram(
            "predictor_inference_duration_seconds",
            "Time of one batched forward pass, by model replica (index) and its device.",
            ("replica", "device"), buckets=REQUEST_BUCKETS, registry=registry)
        self._batch_size = Histogram(
            "predictor_batch_size", "Rows per batched forward pass, by replica and device.",
            ("replica", "device"), buckets=BATCH_SIZE_BUCKETS, registry=registry)
        self._replicas = Gauge(
            "predictor_replicas", "Model replicas by state (starting, ready, failed).",
            ("state",), registry=registry)
        for state in REPLICA_STATES:
            self._replicas.labels(state).set(0)
        rejected = Counter(
            "predictor_rejected_requests",
            "Requests answered without a forward pass, by reason: queue_rows / queue_wait "
            "(503, queue full), deadline (504), disconnected (client left while queued), "
            "out_of_memory (503, the batch did not fit the device even in halves), "
            "stream_slots (503, every replica has MAX_STREAMS open streams).",
            ("reason",), registry=registry)
        self._rejected = {reason: rejected.labels(reason) for reason in REASONS}
        self._queue_rows = Gauge(
            "predictor_queue_rows", "Rows waiting in the batching queue or in the running batch.",
            registry=registry)
        self._streams = Gauge(
            "predictor_in_flight_streams",
            "Streams open now (their generator has not ended yet).", registry=registry)
        self._stream_chunks = Counter(
            "predictor_stream_chunks", "Stream chunks sent to clients, every protocol.",
            registry=registry)
        self._first_chunk = Histogram(
            "predictor_stream_first_chunk_seconds",
            "Time from a stream's start to its first chunk (or its end, if it has none).",
            buckets=REQUEST_BUCKETS, registry=registry)
        self._streams_cancelled = Counter(
            "predictor_streams_cancelled",
            "Streams whose client left before their end (their generator was closed).",
            registry=registry)
        self._model_info = _ModelInfoCollector()
        registry.register(self._model_info)
        self.nvml: NvmlCollector | None = None
        if nvml_loader is not None:
            self.nvml = NvmlCollector(nvml_loader)
            registry.register(self.nvml)
        # Children cached per label set: .labels() takes a lock and builds a key on every call.
        self._request_children: dict[tuple[str, str], Any] = {}
        self._duration_children: dict[str, Any] = {}
        self._replica_children: dict[tuple[int, str], tuple[Any, Any]] = {}

    def asgi(self, app: ASGIApp) -> ASGIApp:
        """Wrap an ASGI app: count, time and track every HTTP request by its matched route."""

        async def metrics_app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            status = 500  # what the client sees when the app raises before responding

            async def send_status(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            start = time.perf_counter()
            self._in_flight.inc()
            try:
                await app(scope, receive, send_status)
            finally:
                self._in_flight.dec()
                self._record(_endpoint(scope), status, time.perf_counter() - start)

        return metrics_app

    def _record(self, endpoint: str, status: int, seconds: float) -> None:
        key = (endpoint, str(status))
        counter = self._request_children.get(key)
        if counter is None:
            counter = self._request_children[key] = self._requests.labels(*key)
        counter.inc()
        histogram = self._duration_children.get(endpoint)
        if histogram is None:
            histogram = self._duration_children[endpoint] = self._duration.labels(endpoint)
        histogram.observe(seconds)

    def observe_batch(self, rows: int, queue_seconds: Sequence[float], inference_seconds: float,
                      replica: int, device: str) -> None:
        """One forward pass over ``rows`` rows on replica ``replica`` (on ``device``);
        ``queue_seconds`` has one wait per request."""
        children = self._replica_children.get((replica, device))
        if children is None:
            labels = (str(replica), device)
            children = self._replica_children[replica, device] = (
                self._batch_size.labels(*labels), self._inference.labels(*labels))
        children[0].observe(rows)
        for wait in queue_seconds:
            self._queue.observe(wait)
        children[1].observe(inference_seconds)

    def set_replicas(self, counts: Mapping[str, int]) -> None:
        """``predictor_replicas{state}``: every state, 0 where no replica is in it."""
        for state in REPLICA_STATES:
            self._replicas.labels(state).set(counts.get(state, 0))

    def reject(self, reason: str) -> None:
        """One request answered without a forward pass (a reason from ``REASONS``)."""
        self._rejected[reason].inc()

    def stream_opened(self) -> None:
        self._streams.inc()

    def stream_ended(self) -> None:
        self._streams.dec()

    def stream_cancelled(self) -> None:
        self._streams_cancelled.inc()

    def stream_chunk(self) -> None:
        self._stream_chunks.inc()

    def stream_first_chunk(self, seconds: float) -> None:
        self._first_chunk.observe(seconds)

    def watch_queue(self, rows: Callable[[], int]) -> None:
        """``predictor_queue_rows`` reads ``rows()`` at scrape time."""
        self._queue_rows.set_function(rows)

    def set_model_info(self, **labels: str) -> None:
        """``predictor_model_info{model=..., device=..., ...} 1``; a later call replaces it.

        Keys come from a predictor's ``info``: ones that are not Prometheus label names
        ("torch-version") are made into one ("torch_version") rather than break the scrape.
        """
        self._model_info.labels = {label_name(k): str(v) for k, v in sorted(labels.items())}

    def render(self) -> tuple[bytes, str]:
        """The exposition body and its Content-Type, for ``GET /metrics``."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def label_name(key: str) -> str:
    """``key`` as a valid Prometheus label name, not one of the reserved ``__`` names."""
    name = _NOT_LABEL_CHARS.sub("_", key).lstrip("_")
    return name if name and not name[0].isdigit() else f"label_{name}"


def _endpoint(scope: Scope) -> str:
    # Starlette's router stores the matched route in the (shared) scope; its path is the
    # template ("/items/{id}"), so label values stay bounded.
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) and path else OTHER_ENDPOINT


class _ModelInfoCollector(Collector):
    def __init__(self) -> None:
        self.labels: dict[str, str] = {}

    def describe(self) -> Iterable[Metric]:
        yield GaugeMetricFamily("predictor_model_info", "")

    def collect(self) -> Iterable[Metric]:
        if not self.labels:
            return
        family = GaugeMetricFamily(
            "predictor_model_info", "The loaded model; always 1, the facts are in the labels.",
            labels=list(self.labels))
        family.add_metric(list(self.labels.values()), 1)
        yield family
