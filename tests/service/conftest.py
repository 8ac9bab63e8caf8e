"""The default server (the built-in digits model, MAX_BODY_BYTES=200000) that test_http and
test_v2 both read from: one process for the session instead of one per module. Its tests leave
it as they found it (ready) and assert no exact counter that another module's traffic moves.

And the streaming server (the Ticker, tests/service/stream_predictor.py) that test_streaming and
test_completions share; their tests leave no stream open."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ServerProcess, start_server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The default server (the built-in digits model) for read-only tests."""
    server = start_server(tmp_path_factory.mktemp("server"), env={"MAX_BODY_BYTES": "200000"})
    yield server
    server.stop()


MAX_STREAMS = 2


def ticker_env(log: Path, **extra: str) -> dict[str, str]:
    """One replica streaming the Ticker, MAX_STREAMS=2, its generator's log in ``log``."""
    return {"PREDICTOR": "tests.service.stream_predictor:Ticker", "DEVICE": "cpu",
            "REPLICAS_PER_DEVICE": "1", "MAX_STREAMS": str(MAX_STREAMS),
            "MODEL_NAME": "ticker", "TICKER_LOG": str(log), **extra}


@pytest.fixture(scope="session")
def ticker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    """The streaming server and its generator's log."""
    tmp = tmp_path_factory.mktemp("ticker")
    log = tmp / "ticker.log"
    server = start_server(tmp, env=ticker_env(log))
    yield server, log
    server.stop()
