"""schemathesis against the live /openapi.json: no server error, every answer as documented."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.conftest import start_server

pytestmark = pytest.mark.slow
EXAMPLES = 60  # per operation: a few seconds in all, bounded


def test_no_server_error_and_every_answer_as_documented(tmp_path: Any) -> None:
    server = start_server(tmp_path, env={"LOG_LEVEL": "warning"})
    try:
        schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
        failures: dict[str, str] = {}
        tested: list[str] = []
        for result in schema.get_all_operations():
            operation = result.ok()
            tested.append(operation.label)

            @given(case=operation.as_strategy())
            @settings(max_examples=EXAMPLES, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            def check(case: Any) -> None:
                case.call_and_validate(base_url=server.url, timeout=30,
                                       checks=[not_a_server_error, response_schema_conformance])

            try:
                check()
            except Exception as exc:  # noqa: BLE001 - reported per operation below
                failures[operation.label] = f"{type(exc).__name__}: {exc}"
        assert "POST /predict" in tested
        assert failures == {}
    finally:
        assert server.stop() == 0
