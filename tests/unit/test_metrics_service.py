"""ServiceMetrics: the ASGI wrapper, batching histograms, model info and the exposition."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from service._admission import REASONS
from service._metrics import OTHER_ENDPOINT, ServiceMetrics, label_name
from tests.fakenvml import FakeGpu, FakeNvml, loader


async def ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def teapot(request: Request) -> PlainTextResponse:
    return PlainTextResponse("no", status_code=418)


async def boom(request: Request) -> PlainTextResponse:
    raise RuntimeError("boom")


def make_app() -> Starlette:
    return Starlette(routes=[Route("/v1/predict", ok, methods=["POST"]),
                             Route("/items/{item_id}", ok), Route("/teapot", teapot),
                             Route("/boom", boom)])


def call(app: Any, method: str, path: str) -> list[dict[str, Any]]:
    """One HTTP request through the ASGI app; the messages it sent."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
             "root_path": "", "query_string": b"", "headers": [],
             "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 50000)}
    asyncio.run(app(scope, receive, send))
    return sent


def metrics() -> ServiceMetrics:
    return ServiceMetrics(CollectorRegistry(), nvml_loader=None)


REQUESTS = [
    ("route", "POST", "/v1/predict", "/v1/predict", "200"),
    ("path-template", "GET", "/items/123", "/items/{item_id}", "200"),
    ("status-from-app", "GET", "/teapot", "/teapot", "418"),
    ("unknown-path", "GET", "/wp-login.php", OTHER_ENDPOINT, "404"),
    ("wrong-method", "GET", "/v1/predict", "/v1/predict", "405"),
]


@pytest.mark.parametrize(("method", "path", "endpoint", "code"),
                         [row[1:] for row in REQUESTS], ids=[row[0] for row in REQUESTS])
def test_request_counted_by_route_and_code(method: str, path: str, endpoint: str,
                                           code: str) -> None:
    m = metrics()
    app = m.asgi(make_app())
    call(app, method, path)
    call(app, method, path)
    r = m.registry
    assert r.get_sample_value("predictor_requests_total",
                              {"endpoint": endpoint, "code": code}) == 2
    assert r.get_sample_value("predictor_request_duration_seconds_count",
                              {"endpoint": endpoint}) == 2
    assert r.get_sample_value("predictor_in_flight_requests") == 0


def test_app_exception_counts_a_500_and_propagates() -> None:
    m = metrics()
    app = m.asgi(make_app())
    with pytest.raises(RuntimeError, match="^boom$"):
        call(app, "GET", "/boom")
    assert m.registry.get_sample_value("predictor_requests_total",
                                       {"endpoint": "/boom", "code": "500"}) == 1
    assert m.registry.get_sample_value("predictor_in_flight_requests") == 0


def test_in_flight_counts_the_request_being_served() -> None:
    m = metrics()
    seen: list[float | None] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(m.registry.get_sample_value("predictor_in_flight_requests"))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    call(m.asgi(inner), "GET", "/")
    assert seen == [1]
    # a bare ASGI app has no router: no route in the scope, so the bounded fallback label
    assert m.registry.get_sample_value("predictor_requests_total",
                                       {"endpoint": OTHER_ENDPOINT, "code": "204"}) == 1


def test_non_http_scopes_pass_through_uncounted() -> None:
    m = metrics()
    scopes: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        scopes.append(scope["type"])

    asyncio.run(m.asgi(inner)({"type": "lifespan"}, None, None))  # type: ignore[arg-type]
    assert scopes == ["lifespan"]
    assert "predictor_requests_total{" not in m.render()[0].decode()
    assert m.registry.get_sample_value("predictor_in_flight_requests") == 0


def test_observe_batch_feeds_the_three_histograms_by_replica_and_device() -> None:
    m = metrics()
    m.observe_batch(3, [0.001, 0.002, 0.004], 0.010, 0, "cuda:0")
    m.observe_batch(1, [0.0002], 0.003, 0, "cuda:0")
    m.observe_batch(2, [0.0002], 0.005, 1, "cuda:1")
    r = m.registry
    first, second = {"replica": "0", "device": "cuda:0"}, {"replica": "1", "device": "cuda:1"}
    assert r.get_sample_value("predictor_batch_size_count", first) == 2
    assert r.get_sample_value("predictor_batch_size_sum", first) == 4
    assert r.get_sample_value("predictor_batch_size_bucket", {"le": "1.0", **first}) == 1
    assert r.get_sample_value("predictor_batch_size_sum", second) == 2
    assert r.get_sample_value("predictor_queue_duration_seconds_count") == 5
    assert r.get_sample_value("predictor_queue_duration_seconds_bucket", {"le": "0.00025"}) == 2
    assert r.get_sample_value("predictor_inference_duration_seconds_sum",
                              first) == pytest.approx(0.013)
    assert r.get_sample_value("predictor_inference_duration_seconds_sum",
                              second) == pytest.approx(0.005)


@pytest.mark.parametrize("counts, expected", [
    ({}, {"starting": 0, "ready": 0, "failed": 0}),
    ({"starting": 2}, {"starting": 2, "ready": 0, "failed": 0}),
    ({"ready": 1, "failed": 1}, {"starting": 0, "ready": 1, "failed": 1}),
], ids=["before-any", "all-starting", "one-failed"])
def test_replicas_gauge_has_every_state(counts: dict[str, int],
                                        expected: dict[str, int]) -> None:
    m = metrics()
    m.set_replicas({"starting": 5})
    m.set_replicas(counts)
    assert {state: m.registry.get_sample_value("predictor_replicas", {"state": state})
            for state in expected} == expected


def test_model_info_is_one_with_the_latest_labels() -> None:
    m = metrics()
    assert "predictor_model_info{" not in m.render()[0].decode()
    m.set_model_info(model="digits", device="cuda:0", torch_version="2.13.0")
    m.set_model_info(model="digits", device="cpu", torch_version="2.13.0")
    r = m.registry
    assert r.get_sample_value("predictor_model_info", {
        "model": "digits", "device": "cpu", "torch_version": "2.13.0"}) == 1
    assert r.get_sample_value("predictor_model_info", {
        "model": "digits", "device": "cuda:0", "torch_version": "2.13.0"}) is None


def test_render_is_the_text_format_with_every_family() -> None:
    m = ServiceMetrics(CollectorRegistry(), nvml_loader=loader(FakeNvml([FakeGpu()])))
    m.set_model_info(model="digits", device="cpu")
    call(m.asgi(make_app()), "POST", "/v1/predict")
    m.observe_batch(1, [0.001], 0.002, 0, "cpu")
    body, content_type = m.render()
    assert content_type == CONTENT_TYPE_LATEST
    families = {f.name: f.type for f in text_string_to_metric_families(body.decode())}
    assert families == {
        "predictor_requests": "counter",
        "predictor_request_duration_seconds": "histogram",
        "predictor_in_flight_requests": "gauge",
        "predictor_queue_duration_seconds": "histogram",
        "predictor_inference_duration_seconds": "histogram",
        "predictor_batch_size": "histogram",
        "predictor_replicas": "gauge",
        "predictor_rejected_requests": "counter",
        "predictor_queue_rows": "gauge",
        "predictor_in_flight_streams": "gauge",
        "predictor_stream_chunks": "counter",
        "predictor_stream_first_chunk_seconds": "histogram",
        "predictor_streams_cancelled": "counter",
        "predictor_model_info": "gauge",
        "predictor_gpus": "gauge",
        "predictor_gpu_scrape_errors": "counter",
        "predictor_gpu_utilization_ratio": "gauge",
        "predictor_gpu_memory_utilization_ratio": "gauge",
        "predictor_gpu_memory_used_bytes": "gauge",
        "predictor_gpu_memory_total_bytes": "gauge",
        "predictor_gpu_power_watts": "gauge",
        "predictor_gpu_power_limit_watts": "gauge",
        "predictor_gpu_energy_joules": "counter",
        "predictor_gpu_temperature_celsius": "gauge",
    }


def test_without_nvml_loader_there_are_no_gpu_metrics() -> None:
    assert b"predictor_gpus" not in metrics().render()[0]


def test_two_instances_do_not_share_a_registry() -> None:
    a, b = metrics(), metrics()
    call(a.asgi(make_app()), "GET", "/teapot")
    assert b.registry.get_sample_value("predictor_requests_total",
                                       {"endpoint": "/teapot", "code": "418"}) is None


LABEL_NAMES = [
    ("valid", "torch_version", "torch_version"),
    ("dash", "torch-version", "torch_version"),
    ("dots-and-spaces", "cuda.arch list", "cuda_arch_list"),
    ("reserved-prefix", "__name__", "name__"),
    ("leading-digit", "2nd", "label_2nd"),
    ("only-symbols", "--", "label_"),
]


@pytest.mark.parametrize(("key", "expected"), [row[1:] for row in LABEL_NAMES],
                         ids=[row[0] for row in LABEL_NAMES])
def test_label_name(key: str, expected: str) -> None:
    assert label_name(key) == expected


def test_model_info_with_awkward_keys_still_renders() -> None:
    m = metrics()
    m.set_model_info(**{"model": "digits", "torch-version": "2.13.0", "device": "cpu"})
    assert m.registry.get_sample_value("predictor_model_info", {
        "model": "digits", "torch_version": "2.13.0", "device": "cpu"}) == 1


def test_every_rejection_reason_is_exported_from_the_start_and_counts() -> None:
    m = metrics()
    r = m.registry
    assert {reason: r.get_sample_value("predictor_rejected_requests_total", {"reason": reason})
            for reason in REASONS} == dict.fromkeys(REASONS, 0.0)
    m.reject("queue_wait")
    m.watch_queue(lambda: 7)
    assert r.get_sample_value("predictor_rejected_requests_total", {"reason": "queue_wait"}) == 1
    assert r.get_sample_value("predictor_queue_rows") == 7
