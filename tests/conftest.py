"""Shared fixtures: the Docker engine (fail in CI, skip elsewhere), unique test names and
labels, free loopback ports, and real service processes stopped by their own PID."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI") == "true"
# Every container, volume, network and image a test creates carries this label.
TEST_LABEL = {"org.gpu-launcher.test": "1"}


def unavailable(msg: str) -> NoReturn:
    """Something a test needs is missing: fail when CI=true (set-up provides it there), else skip."""
    if IN_CI:
        pytest.fail(msg)
    pytest.skip(msg)


def tool_path(name: str, setup: str) -> str:
    """NAME's path on PATH, else ``unavailable`` naming the ``setup`` step that installs it."""
    path = shutil.which(name)
    if path is None:
        unavailable(f"no {name} on PATH; run {setup}")
    return path


def error_text(error: type[Exception], call: Callable[..., object], *args: Any,
               **kwargs: Any) -> str:
    """The text of the ``error`` that ``call(*args, **kwargs)`` raises (the test fails if none),
    for tables that assert it exactly: its ``message`` where it has one (the project's errors),
    else ``str()``."""
    with pytest.raises(error) as info:
        call(*args, **kwargs)
    message = getattr(info.value, "message", None)
    return message if isinstance(message, str) else str(info.value)


def unique(prefix: str = "glt") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def unique_name() -> str:
    return unique()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def docker_client():  # type: ignore[no-untyped-def]
    """The real engine. Missing engine: fail when CI=true (the tests must run there), else skip."""
    try:
        import docker

        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "no engine"
        unavailable(f"no Docker engine reachable ({type(exc).__name__}: {exc}); "
                    "run scripts/setup --engine")
    yield client
    client.close()


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
    """SIGTERM a process a test started (by its PID), SIGKILL after ``timeout``; its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return int(proc.returncode)


@dataclass
class ServerProcess:
    """A `python -m service` process on 127.0.0.1:port, stopped by its own PID."""

    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    url: str = field(init=False)

    def __post_init__(self) -> None:
        self.url = f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                response = requests.get(self.url + "/readyz", timeout=1)
            except requests.RequestException:
                pass
            else:
                if response.status_code == 200:
                    return
                if response.status_code == 503 and response.json().get("status") == "failed":
                    raise AssertionError(f"model failed to load: {response.text}\n{self.log()}")
            time.sleep(0.1)
        raise AssertionError(f"server not ready within {timeout}s:\n{self.log()}")

    def wait_settled(self, timeout: float = 90.0) -> requests.Response | None:
        """The /readyz reply once the model is no longer starting (ready or failed), or the last
        reply when ``timeout`` runs out (None if none came)."""
        deadline, reply = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            try:
                reply = requests.get(self.url + "/readyz", timeout=2)
                if reply.json()["status"] != "starting":
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2)
        return reply

    def stop(self, timeout: float = 20.0) -> int:
        return stop_process(self.proc, timeout)


def start_server(tmp_path: Path, env: dict[str, str] | None = None, args: list[str] | None = None,
                 wait: bool = True) -> ServerProcess:
    port = free_port()
    log_path = tmp_path / f"server-{port}.log"
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port), *(args or [])],
            cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT,
        )
    server = ServerProcess(port, proc, log_path)
    if wait:
        try:
            server.wait_ready()
        except BaseException:
            server.stop()
            raise
    return server


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    """Start real service processes; every one started is stopped (by PID) at teardown."""
    started: list[ServerProcess] = []

    def factory(env: dict[str, str] | None = None, args: list[str] | None = None,
                wait: bool = True) -> ServerProcess:
        server = start_server(tmp_path, env, args, wait)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


def digits_split() -> tuple[Any, Any, Any, Any]:
    """The digits train/hold-out split exactly as scripts/train-digits makes it."""
    path = str(ROOT / "scripts" / "train-digits")
    loader = importlib.machinery.SourceFileLoader("train_digits", path)
    spec = importlib.util.spec_from_loader("train_digits", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module.digits_split()  # type: ignore[no-any-return]


def _has_gpu() -> tuple[bool, str]:
    from service.nvml import NvmlUnavailable, load_nvml

    try:
        nvml = load_nvml()
    except NvmlUnavailable as exc:
        return False, str(exc)
    count = nvml.nvmlDeviceGetCount()
    return (count > 0, f"NVML sees {count} GPUs")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [i for i in items if i.get_closest_marker("gpu")]
    if not gpu_items:
        return
    ok, why = _has_gpu()
    if not ok:
        skip = pytest.mark.skip(reason=f"no NVIDIA GPU here: {why}")
        for item in gpu_items:
            item.add_marker(skip)
