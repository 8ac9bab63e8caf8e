"""API_TOKEN against a real process: no token, no work; health and metrics stay open."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.conftest import ServerProcess, start_server
from tests.reliability.conftest import ROW, sample, slow_env

pytestmark = pytest.mark.slow
TOKEN = "t0ken-from-a-mounted-secret"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("access")
    secret = folder / "api-token"
    secret.write_text(TOKEN + "\n")
    server = start_server(folder, slow_env(0.0, 8, API_TOKEN_FILE=str(secret)))
    yield server
    server.stop()


@pytest.mark.parametrize("headers, status, challenge", [
    ({}, 401, 'Bearer realm="predictor"'),
    ({"Authorization": "Bearer nope"}, 401, 'Bearer realm="predictor", error="invalid_token"'),
    ({"Authorization": TOKEN}, 401, 'Bearer realm="predictor"'),
    ({"Authorization": f"Bearer {TOKEN}"}, 200, None),
], ids=["missing", "wrong", "no-scheme", "right"])
def test_with_api_token_a_missing_or_wrong_token_is_401_and_queues_no_work(
        guarded: ServerProcess, headers: dict[str, str], status: int,
        challenge: str | None) -> None:
    server = guarded
    labels = {"endpoint": "/predict", "code": str(status)}
    batches, answered = (sample(server, "predictor_batch_size_count"),
                         sample(server, "predictor_requests_total", labels))
    reply = requests.post(server.url + "/predict", data=ROW, headers=headers, timeout=5)
    assert reply.status_code == status
    assert reply.headers.get("www-authenticate") == challenge
    assert sample(server, "predictor_batch_size_count") - batches == (status == 200)
    assert sample(server, "predictor_requests_total", labels) - answered == 1
    for path in ("/healthz", "/readyz", "/metrics"):
        assert requests.get(server.url + path, timeout=5).status_code == 200, path
    assert TOKEN not in server.log()
