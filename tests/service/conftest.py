"""The default server (the built-in digits model, MAX_BODY_BYTES=200000) that test_http and
test_v2 both read from: one process for the session instead of one per module. Its tests leave
it as they found it (ready) and assert no exact counter that another module's traffic moves."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import ServerProcess, start_server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The default server (the built-in digits model) for read-only tests."""
    server = start_server(tmp_path_factory.mktemp("server"), env={"MAX_BODY_BYTES": "200000"})
    yield server
    server.stop()
