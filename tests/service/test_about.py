"""``GET /``: what is served — the input width a request must have, once the model is loaded."""

from __future__ import annotations

from starlette.types import ASGIApp

from tests.service.asgi import request, wait_ready
from tests.service.test_app import SumPredictor, serve


def test_root_says_the_input_width_once_the_model_is_loaded() -> None:
    predictor = SumPredictor(width=5)
    predictor.release.clear()

    async def scenario(app: ASGIApp) -> None:
        loading = await request(app, "GET", "/")
        assert (loading.status, loading.json()) == (200, {
            "service": "gpu-launcher", "kind": None, "input_width": None, "model": {},
            "max_request_rows": 1024})
        predictor.release.set()
        assert (await wait_ready(app)).status == 200
        ready = await request(app, "GET", "/")
        assert (ready.status, ready.json()) == (200, {
            "service": "gpu-launcher", "kind": "tensor", "input_width": 5,
            "model": {"model": "sum", "device": "cpu"}, "max_request_rows": 1024})

    serve(predictor, scenario)


def test_root_with_input_width_from_the_settings() -> None:
    async def scenario(app: ASGIApp) -> None:
        assert (await wait_ready(app)).status == 200
        assert (await request(app, "GET", "/")).json()["input_width"] == 7

    serve(SumPredictor(width=None), scenario, input_width=7)
