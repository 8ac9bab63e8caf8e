"""``launcher up / status / logs / down`` against the real engine, as a user runs them: one
``up`` (built offline from the stand-in base) serves the module's checks, in order; then down,
a crash, and the GPU failures on this GPU-less host.

Every container, volume and image here has a unique name and TEST_LABEL (``up --label``), and
the module's teardown removes them.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from launcher._engine import connect
from launcher._engine_errors import TOOLKIT_HINT
from launcher._remote_probe import remote_probe
from tests.clihelpers import has_nvml, run_launcher
from tests.conftest import ROOT, TEST_LABEL, free_port, unavailable, unique
from tests.docker.conftest import BUILD_TIMEOUT, label_args

pytestmark = [pytest.mark.docker, pytest.mark.slow]

LABEL_ARGS = label_args(TEST_LABEL)
DIGIT_ZERO = [0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0, 0, 3, 15, 2, 0, 11, 8, 0,
              0, 4, 12, 0, 0, 8, 8, 0, 0, 5, 8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0,
              0, 2, 14, 5, 10, 12, 0, 0, 0, 0, 6, 13, 10, 0, 0, 0]


no_gpu_here = pytest.mark.skipif(has_nvml(), reason="this host has NVML: no CPU fallback")


def launcher(*argv: str, timeout: float = 300,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_launcher(*argv, timeout=timeout, env=env)  # up may build: a longer timeout


@dataclass(frozen=True)
class Service:
    name: str
    tag: str
    url: str
    args: tuple[str, ...]  # up's arguments, to run it again
    first_up: subprocess.CompletedProcess[str]


def cleanup(client: Any, name: str, tag: str | None = None) -> None:
    """Remove what a test's ``up`` made: its container, volumes and image (test-labelled only)."""
    import docker.errors

    for container in client.containers.list(all=True, filters={"name": f"^{name}$"}):
        if container.labels.get("org.gpu-launcher.test") == "1":
            container.remove(force=True, v=True)
    for volume in client.volumes.list(filters={"label": "org.gpu-launcher.test=1"}):
        if volume.name in (f"{name}-models", f"{name}-data"):
            volume.remove(force=True)
    if tag is not None:
        try:
            image = client.images.get(tag)
        except docker.errors.ImageNotFound:
            return
        if image.labels.get("org.gpu-launcher.test") == "1":
            client.images.remove(tag, force=True, noprune=True)  # keep the shared cache


@pytest.fixture(scope="module")
def service(docker_client: Any, standin_image: str, wheelhouse: Path) -> Iterator[Service]:
    name, tag, port = unique("glt-up"), f"{unique('glt-up')}:test", free_port()
    args = ("--name", name, "--tag", tag, "--base-image", standin_image, "--wheelhouse",
            str(wheelhouse), "-p", f"127.0.0.1:{port}:8000", *LABEL_ARGS)
    try:
        first = launcher("up", *args, timeout=BUILD_TIMEOUT)
        assert first.returncode == 0, first.stderr[-4000:]
        yield Service(name, tag, f"http://127.0.0.1:{port}", args, first)
    finally:
        launcher("down", "--name", name, "--volumes", "-t", "2")
        cleanup(docker_client, name, tag)


def volumes_of(client: Any, name: str) -> list[str]:
    return sorted(v.name for v in client.volumes.list()
                  if v.name in (f"{name}-models", f"{name}-data"))


def inspect(client: Any, name: str) -> dict[str, Any]:
    return dict(client.api.inspect_container(name))


def predict(url: str) -> dict[str, Any]:
    response = requests.post(url + "/predict", json={"inputs": [DIGIT_ZERO]}, timeout=10)
    assert response.status_code == 200, response.text
    return dict(response.json())


def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout}s")


def test_up_builds_offline_and_serves_predict_on_the_published_loopback_port(
        service: Service) -> None:
    first = service.first_up
    assert f"launcher: building {service.tag} from Dockerfile" in first.stderr
    assert "offline from" in first.stderr
    assert first.stdout == service.url + "\n"  # stdout: only the URL
    assert f"curl -s {service.url}/predict -d '" in first.stderr
    assert "Traceback" not in first.stderr
    assert predict(service.url)["predictions"] == [0]


def test_status_json_reports_it_healthy(service: Service) -> None:
    def healthy() -> dict[str, Any] | None:
        result = launcher("status", "--json", "--name", service.name, timeout=60)
        assert result.returncode == 0, result.stderr
        rows = json.loads(result.stdout)
        return rows[0] if rows and rows[0]["health"] == "healthy" else None

    row = wait_for(healthy, 60, "healthcheck healthy")  # HEALTHCHECK --interval=10s
    assert (row["name"], row["image"], row["state"], row["gpus"]) == (
        service.name, service.tag, "running", "none")
    assert row["ports"] == [f"{service.url.removeprefix('http://')}->8000/tcp"]
    assert row["uptime_seconds"] >= 0
    # the replicas, from the service's /readyz through the published port: auto, one per CPU
    replicas = row["replicas"]
    assert replicas and all(r == {"device": "cpu", "state": "ready", "reason": None}
                            for r in replicas), replicas
    table = launcher("status", "--name", service.name, timeout=60)
    assert table.returncode == 0, table.stderr
    assert "REPLICAS" in table.stdout.splitlines()[0]
    assert f"  healthy  {len(replicas)}/{len(replicas)} ready  none  " in table.stdout


def test_the_container_is_hardened_with_a_restart_policy_and_named_volumes(
        docker_client: Any, service: Service) -> None:
    data = inspect(docker_client, service.name)
    host = data["HostConfig"]
    assert data["Config"]["User"] == "10001:10001"
    assert host["ReadonlyRootfs"] is True
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["CapDrop"] == ["ALL"]
    assert host["RestartPolicy"]["Name"] == "unless-stopped"
    mounts = {m["Destination"]: m for m in data["Mounts"]}
    assert (mounts["/data"]["Type"], mounts["/data"]["Name"]) == ("volume", f"{service.name}-data")
    assert (mounts["/models"]["Type"], mounts["/models"]["Name"]) == (
        "volume", f"{service.name}-models")
    assert data["Config"]["Labels"]["org.gpu-launcher.test"] == "1"
    top = docker_client.api.top(service.name, ps_args="-o pid,uid,args")
    assert {row[1] for row in top["Processes"]} == {"10001"}  # nothing runs as root


def test_up_again_with_the_same_plan_leaves_it_running(docker_client: Any,
                                                       service: Service) -> None:
    before = inspect(docker_client, service.name)["Id"]
    again = launcher("up", *service.args)
    assert again.returncode == 0, again.stderr
    assert f"{service.name}: already running with the same plan; left alone" in again.stderr
    assert inspect(docker_client, service.name)["Id"] == before


@no_gpu_here
def test_up_gpus_all_here_falls_back_to_cpu_with_a_warning(service: Service) -> None:
    result = launcher("up", *service.args, "--gpus", "all")
    assert result.returncode == 0, result.stderr
    assert "launcher: warning: --gpus all: no GPU found (" in result.stderr
    assert "running on CPU" in result.stderr
    assert result.stdout == service.url + "\n"


@no_gpu_here
def test_up_require_gpu_here_exits_1_with_the_toolkit_hint(service: Service) -> None:
    result = launcher("up", *service.args, "--gpus", "all", "--require-gpu")
    assert (result.returncode, result.stdout) == (1, "")
    lines = result.stderr.splitlines()
    assert lines[-2].startswith("launcher: error: --gpus all --require-gpu: no GPU found (")
    assert lines[-1] == ("hint: install the NVIDIA driver and the NVIDIA Container Toolkit "
                         "(nvidia-ctk runtime configure --runtime=docker), or drop --require-gpu")


def test_a_gpu_plan_forced_with_no_probe_gets_the_toolkit_hint(docker_client: Any,
                                                              service: Service) -> None:
    name = unique("glt-up")
    try:
        result = launcher("up", "--name", name, "--no-probe", "--gpus", "all", "--tag",
                          service.tag, "--no-build", "-p", f"127.0.0.1:{free_port()}:8000",
                          *LABEL_ARGS)
        assert (result.returncode, result.stdout) == (1, "")
        assert result.stderr.splitlines()[-2:] == [
            (f"launcher: error: starting {name}: the engine cannot give containers GPUs: "
            'could not select device driver "" with capabilities: [[gpu]]'),
            f"hint: {TOOLKIT_HINT}"]
        assert docker_client.containers.list(all=True, filters={"name": f"^{name}$"}) == []
    finally:
        cleanup(docker_client, name)


def test_a_port_in_use_exits_1_with_a_hint(docker_client: Any, service: Service) -> None:
    name = unique("glt-up")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        try:
            result = launcher("up", "--name", name, "--tag", service.tag, "--no-build", "-p",
                              f"127.0.0.1:{port}:8000", *LABEL_ARGS)
            assert (result.returncode, result.stdout) == (1, "")
            lines = result.stderr.splitlines()
            assert lines[-2].startswith("launcher: error: starting container ")
            assert "address already in use" in lines[-2]
            assert lines[-1] == ("hint: publish another host port (-p 127.0.0.1:PORT:8000), "
                                 "or stop what holds it")
            assert volumes_of(docker_client, name) == []  # the failed up made them: gone
        finally:
            cleanup(docker_client, name)


def test_a_name_held_by_another_container_exits_1_and_leaves_no_volumes(
        docker_client: Any, service: Service, standin_image: str) -> None:
    name = unique("glt-up")
    docker_client.containers.create(standin_image, ["true"], name=name, labels=TEST_LABEL)
    try:
        result = launcher("up", "--name", name, "--tag", service.tag, "--no-build", "-p",
                          f"127.0.0.1:{free_port()}:8000", *LABEL_ARGS)
        assert (result.returncode, result.stdout) == (1, "")
        assert result.stderr.splitlines()[-2:] == [
            f"launcher: error: a container named {name} exists and launcher did not create it",
            f"hint: choose another --name, or remove it: docker rm -f {name}"]
        assert volumes_of(docker_client, name) == []
    finally:
        cleanup(docker_client, name)


def test_a_service_that_cannot_start_shows_its_last_log_lines(docker_client: Any,
                                                               service: Service) -> None:
    name = unique("glt-up")
    try:
        result = launcher("up", "--name", name, "--tag", service.tag, "--no-build", "-p",
                          f"127.0.0.1:{free_port()}:8000", "-e", "MAX_BATCH_ROWS=zero",
                          "--timeout", "60", *LABEL_ARGS)
        assert (result.returncode, result.stdout) == (1, "")
        assert f"launcher: last 20 log lines of {name}:" in result.stderr
        assert "MAX_BATCH_ROWS" in result.stderr  # the service's own error, from its log
        lines = result.stderr.splitlines()
        assert lines[-2].startswith(f"launcher: error: {name} did not become ready: the "
                                    "container exited")
        assert lines[-1] == (f"hint: see its log (launcher logs --name {name}); "
                             f"remove it with launcher down --name {name}")
    finally:
        cleanup(docker_client, name)


def test_a_zip_that_is_not_a_model_fails_at_once_with_the_services_reason(
        docker_client: Any, service: Service, tmp_path: Path) -> None:
    import zipfile

    model = tmp_path / "model.pt"
    with zipfile.ZipFile(model, "w") as archive:  # passes up's own check: a zip, as a .pt is
        archive.writestr("model/data.pkl", b"weights")
    model.chmod(0o644)
    tmp_path.chmod(0o755)  # the service's user reads the bind-mounted file
    name = unique("glt-up")
    try:
        began = time.monotonic()
        result = launcher("up", "--name", name, "--tag", service.tag, "--no-build", "--model",
                          str(model), "-p", f"127.0.0.1:{free_port()}:8000", *LABEL_ARGS)
        took = time.monotonic() - began
        assert (result.returncode, result.stdout) == (1, ""), result.stderr
        lines = result.stderr.splitlines()
        assert lines[-2].startswith(
            f"launcher: error: {name} did not become ready: the service failed: "
            "MODEL_PATH=/model/model.pt: torch cannot load it as a TorchScript model ("), lines
        assert lines[-2].endswith("(hint: point MODEL_PATH (launcher up --model) at a file saved "
                                  "with torch.jit.save (.pt) or torch.export.save (.pt2), or "
                                  "unset it for the built-in digits model)")
        assert took < 90  # not the whole --timeout (180 s) while Docker's health says starting
    finally:
        cleanup(docker_client, name)


def test_logs_show_the_service_starting_and_follow_new_lines(service: Service) -> None:
    result = launcher("logs", "--name", service.name, "--tail", "50")
    assert result.returncode == 0, result.stderr
    assert "Uvicorn running on http://0.0.0.0:8000" in result.stdout
    marker = "Invalid HTTP request received."  # what the service logs for a garbled request
    lines: queue.Queue[str] = queue.Queue()
    with subprocess.Popen([sys.executable, "-m", "launcher", "logs", "-f", "--tail", "1",
                           "--name", service.name], cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True) as follow:
        try:
            stdout = follow.stdout
            assert stdout is not None
            reader = threading.Thread(target=lambda: [lines.put(ln) for ln in stdout],
                                      daemon=True)
            reader.start()
            first = lines.get(timeout=30)  # the last line, at once
            host, port = service.url.removeprefix("http://").split(":")
            with socket.create_connection((host, int(port)), timeout=10) as garbled:
                garbled.sendall(b"NOT HTTP\r\n\r\n")  # the service logs a line about it now
                garbled.recv(1024)
            deadline, seen = time.monotonic() + 30, []
            while marker not in "".join(seen) and time.monotonic() < deadline:
                try:
                    seen.append(lines.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            still_following = follow.poll() is None
        finally:
            follow.terminate()
            follow.wait(10)
    assert first.strip()
    assert marker in "".join(seen), seen  # -f printed what came after it started
    assert still_following


def test_up_no_build_refuses_a_missing_service_image_and_touches_nothing(
        docker_client: Any) -> None:
    name, tag = unique("glt-up"), f"{unique('glt-none')}:test"
    try:
        result = launcher("up", "--name", name, "--tag", tag, "--no-build", "-p",
                          f"127.0.0.1:{free_port()}:8000", *LABEL_ARGS)
        assert (result.returncode, result.stdout) == (1, "")
        assert result.stderr.splitlines()[-2:] == [
            f"launcher: error: image {tag} is not on the engine and --no-build was given",
            "hint: drop --no-build to build it, or build it first: launcher build"]
        assert docker_client.containers.list(all=True, filters={"name": f"^{name}$"}) == []
        assert volumes_of(docker_client, name) == []
        assert docker_client.images.list(name=tag) == []
    finally:
        cleanup(docker_client, name, tag)


def test_up_with_a_changed_plan_replaces_the_container(docker_client: Any,
                                                       service: Service) -> None:
    before = inspect(docker_client, service.name)["Id"]
    changed = launcher("up", *service.args, "-e", "LOG_LEVEL=debug")
    assert changed.returncode == 0, changed.stderr
    assert f"launcher: {service.name}: replacing it: the plan changed (" in changed.stderr
    after = inspect(docker_client, service.name)
    assert after["Id"] != before and "LOG_LEVEL=debug" in after["Config"]["Env"]
    assert predict(service.url)["predictions"] == [0]


def test_a_crash_of_the_main_process_is_restarted_healthy(docker_client: Any,
                                                          service: Service) -> None:
    if os.geteuid() != 0:  # CI runs as root: a skip there would hide the test
        unavailable("killing the container's main process from the host needs root")
    before = inspect(docker_client, service.name)
    # From outside, as a crash; `docker kill` would count as a manual stop and not restart.
    os.kill(before["State"]["Pid"], signal.SIGKILL)
    wait_for(lambda: inspect(docker_client, service.name)["RestartCount"] > before["RestartCount"],
             30, "restarted by the restart policy")

    def ready() -> bool:
        try:
            return requests.get(service.url + "/readyz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    wait_for(ready, 60, "ready again after the restart")
    assert predict(service.url)["predictions"] == [0]


def test_down_keeps_the_data_volume_and_up_again_sees_its_files(docker_client: Any,
                                                                service: Service) -> None:
    # As the service's own user (10001), who owns the fresh volume's /data.
    wrote = docker_client.api.exec_start(docker_client.api.exec_create(
        service.name, ["sh", "-c", "echo kept > /data/marker"]))
    assert wrote == b""
    down = launcher("down", "--name", service.name, "-t", "5")
    assert down.returncode == 0, down.stderr
    assert down.stderr.splitlines() == [
        f"launcher: stopped and removed {service.name}",
        (f"launcher: kept volumes {service.name}-data, {service.name}-models "
        "(remove them with --volumes)")]
    assert docker_client.containers.list(all=True, filters={"name": f"^{service.name}$"}) == []
    assert docker_client.volumes.get(f"{service.name}-data").name == f"{service.name}-data"

    again = launcher("up", *service.args)
    assert again.returncode == 0, again.stderr
    assert "building" not in again.stderr  # the image is there
    out = docker_client.api.exec_start(docker_client.api.exec_create(
        service.name, ["cat", "/data/marker"]))
    assert out == b"kept\n"


def test_the_remote_probe_runs_launcher_probe_inside_the_service_image(
        docker_client: Any, service: Service) -> None:
    def dangling_volumes() -> set[str]:
        return {v.name for v in docker_client.volumes.list(filters={"dangling": True})}

    before = dangling_volumes()
    engine = connect()
    try:
        # No GPU requested: the copied-in probe runs and finds no NVML, as on a CPU host.
        plain = remote_probe(engine, service.tag, request=None, labels=TEST_LABEL)
        probe = remote_probe(engine, service.tag, labels=TEST_LABEL)  # every GPU, as for real
    finally:
        engine.close()
    assert (plain.gpus, plain.driver_version) == ((), None)
    assert plain.reason is not None and plain.reason.startswith("NVML library")
    if has_nvml():
        assert probe.gpus and probe.reason is None
    else:
        assert probe.gpus == ()
        assert probe.reason == ("the engine cannot give containers GPUs (could not select device "
                                'driver "" with capabilities: [[gpu utility]])')
    leftovers = docker_client.containers.list(
        all=True, filters={"label": "org.gpu-launcher.managed=probe"})
    assert [c for c in leftovers if c.labels.get("org.gpu-launcher.test") == "1"] == []
    # The image declares VOLUME /models /data: the probe's anonymous volumes go with it.
    assert dangling_volumes() - before == set()


def test_down_volumes_removes_the_container_and_its_volumes(docker_client: Any,
                                                          service: Service) -> None:
    down = launcher("down", "--name", service.name, "--volumes", "-t", "5")
    assert down.returncode == 0, down.stderr
    assert down.stderr.splitlines() == [
        f"launcher: stopped and removed {service.name}",
        f"launcher: removed volume {service.name}-data",
        f"launcher: removed volume {service.name}-models"]
    names = {v.name for v in docker_client.volumes.list()}
    assert {f"{service.name}-data", f"{service.name}-models"} & names == set()
