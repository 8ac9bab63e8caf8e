"""``Engine.watch_output`` against the real engine: what wakes ``up``'s readiness poll as soon as
the service writes to its log, and what it does where a log cannot be followed."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from launcher._engine import Engine, connect
from tests.conftest import TEST_LABEL, unique

TALKS = "for i in $(seq 1 50); do echo line $i; sleep 0.2; done; sleep 60"


@pytest.fixture
def engine() -> Iterator[Engine]:
    client = connect()
    yield client
    client.close()


def started(docker_client: Any, image: str, **host: Any) -> str:
    body = {"Image": image, "Cmd": ["sh", "-c", TALKS], "Labels": TEST_LABEL,
            "HostConfig": {"NetworkMode": "none", **host}}
    container = str(docker_client.api.create_container_from_config(
        body, name=unique("glt-watch"))["Id"])
    docker_client.api.start(container)
    return container


def test_each_write_calls_back_until_stopped(docker_client: Any, standin_image: str,
                                             engine: Engine) -> None:
    container = started(docker_client, standin_image)
    try:
        calls: list[float] = []
        woken = threading.Event()

        def on_output() -> None:
            calls.append(time.monotonic())
            woken.set()

        stop = engine.watch_output(container, on_output)
        assert woken.wait(30), "no call within 30 s of a container writing every 0.2 s"
        stop()
        seen = len(calls)
        time.sleep(0.6)  # three more lines written: none of them reaches a stopped watch
        assert len(calls) == seen
        assert not [t for t in threading.enumerate() if t.name.startswith("output of ")]
    finally:
        docker_client.api.remove_container(container, force=True, v=True)


def test_a_log_that_cannot_be_read_is_never_called_back(docker_client: Any, standin_image: str,
                                                        engine: Engine) -> None:
    container = started(docker_client, standin_image, LogConfig={"Type": "none", "Config": {}})
    try:
        calls: list[str] = []
        stop = engine.watch_output(container, lambda: calls.append("output"))
        time.sleep(0.6)
        stop()
        assert calls == []
    finally:
        docker_client.api.remove_container(container, force=True, v=True)
