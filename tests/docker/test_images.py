"""The service images against the real engine: built offline from the stand-in base through
`launcher build --wheelhouse`, run hardened (read-only root, non-root, init, healthcheck), and
rebuilt after a code-only edit without reinstalling the dependencies. Select with `-k images`."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from launcher._build import context_files
from tests.conftest import ROOT, TEST_LABEL, digits_split, free_port, unique
from tests.docker.conftest import BuiltImage, launcher_build, remove_image

# A cold CI run builds the image (torch from the wheelhouse) inside the first test's time.
pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(1800)]
HEALTHY_WITHIN = 240.0  # seconds; the HEALTHCHECK's start period is 120s
OCI = "org.opencontainers.image."




def wait_healthy(container: Any, timeout: float = HEALTHY_WITHIN) -> str:
    deadline = time.monotonic() + timeout
    status = "none"
    while time.monotonic() < deadline:
        container.reload()
        if container.status == "exited":
            break
        status = container.attrs["State"].get("Health", {}).get("Status", "none")
        if status in ("healthy", "unhealthy"):
            return str(status)
        time.sleep(1)
    raise AssertionError(f"health {status!r}, state {container.status} after {timeout}s:\n"
                         f"{container.logs().decode(errors='replace')[-3000:]}")


@pytest.fixture
def running(docker_client: Any, cpu_image: BuiltImage) -> Iterator[tuple[Any, str]]:
    """The CPU image as `launcher up` hardens it: read-only root, tmpfs /tmp, 127.0.0.1 port."""
    port = free_port()
    container = docker_client.containers.run(
        cpu_image.tag, detach=True, name=unique("images"), labels=TEST_LABEL,
        read_only=True, tmpfs={"/tmp": "rw,size=256m"},
        ports={"8000/tcp": ("127.0.0.1", port)}, cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
    )
    try:
        yield container, f"http://127.0.0.1:{port}"
    finally:
        container.remove(force=True, v=True)


def test_cpu_image_read_only_answers_predict_as_non_root_and_turns_healthy(
        running: tuple[Any, str]) -> None:
    container, url = running
    assert wait_healthy(container) == "healthy"
    _, x_test, _, y_test = digits_split()
    predictions: list[int] = []
    for start in range(0, len(x_test), 150):
        reply = requests.post(url + "/predict", json={"inputs": x_test[start:start + 150].tolist()},
                              timeout=30)
        assert reply.status_code == 200, reply.text
        predictions += reply.json()["predictions"]
    accuracy = sum(int(p == y) for p, y in zip(predictions, y_test)) / len(y_test)
    assert accuracy >= 0.95, accuracy

    uid = container.exec_run(["id", "-u"]).output.decode().strip()
    pid1 = container.exec_run(["cat", "/proc/1/cmdline"]).output.split(b"\0")[0]
    write = container.exec_run(["sh", "-c", "touch /app/x 2>&1; touch /tmp/x && echo tmp-ok"])
    assert (uid, pid1) == ("10001", b"/opt/venv/bin/dumb-init")
    assert b"Read-only file system" in write.output and b"tmp-ok" in write.output


def test_sigterm_reaches_the_server_through_the_init(running: tuple[Any, str]) -> None:
    container, _ = running
    assert wait_healthy(container) == "healthy"
    container.stop(timeout=20)  # SIGTERM, then SIGKILL (exit 137) only if it is ignored
    container.reload()
    assert container.attrs["State"]["ExitCode"] in (0, 143), container.logs()[-2000:]


def test_cpu_image_metadata(docker_client: Any, cpu_image: BuiltImage) -> None:
    config = docker_client.images.get(cpu_image.tag).attrs["Config"]
    env = dict(e.split("=", 1) for e in config["Env"])
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["/opt/venv/bin/dumb-init", "--"]
    assert config["Cmd"] == ["python", "-m", "service"]
    assert set(config["ExposedPorts"]) == {"8000/tcp"}
    assert set(config["Volumes"]) == {"/models", "/data"}
    assert "/readyz" in " ".join(config["Healthcheck"]["Test"])
    assert (env["HOST"], env["PORT"]) == ("0.0.0.0", "8000")
    assert config["Labels"][OCI + "base.name"] == "gpu-launcher/standin-bookworm:latest"
    assert {OCI + k for k in ("title", "source", "licenses", "version")} <= set(config["Labels"])


def test_unchanged_inputs_reuse_the_image_without_building(
        cpu_image: BuiltImage, wheelhouse: Path, image_labels: dict[str, str]) -> None:
    again = launcher_build("--base-image", "gpu-launcher/standin-bookworm:latest",
                           "--wheelhouse", str(wheelhouse), labels=image_labels)
    assert (again.tag, again.id, again.built) == (cpu_image.tag, cpu_image.id, False)
    assert f"image {cpu_image.tag} is up to date (same build inputs); not building" in again.stderr


def copy_build_inputs(dest: Path) -> Path:
    """The files the context sends, copied: edits happen there, never in the shared tree."""
    for f in context_files(ROOT, "Dockerfile"):
        target = dest / f.arcname
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f.source, target)
    return dest


def test_code_only_edit_reuses_the_dependency_layers(
        docker_client: Any, cpu_image: BuiltImage, wheelhouse: Path,
        image_labels: dict[str, str], tmp_path: Path) -> None:
    context = copy_build_inputs(tmp_path / "ctx")
    with (context / "service" / "__init__.py").open("a") as f:
        # Unique: an edit some earlier run already built would come from the cache too.
        f.write(f"# a code-only edit {unique()}\n")
    edited = launcher_build("--base-image", "gpu-launcher/standin-bookworm:latest",
                            "--wheelhouse", str(wheelhouse), labels=image_labels, context=context)
    try:
        assert edited.built and edited.tag != cpu_image.tag
        install = next(s for s in edited.steps if "pip install" in s["instruction"])
        copy_code = next(s for s in edited.steps if s["instruction"].startswith("COPY service/"))
        assert (install["cached"], copy_code["cached"]) == (True, False), edited.steps
        # Every layer under the code (venv, lock, wheelhouse) came from the cache; ARG and FROM
        # make no layer of their own.
        layers_before = [s for s in edited.steps if s["step"] < copy_code["step"]
                         and s["instruction"].startswith(("RUN", "COPY", "ENV"))]
        assert [s for s in layers_before if not s["cached"]] == []
        # ... and the progress on stderr says so.
        line = next(ln for ln in edited.stderr.splitlines()
                    if ln.startswith(f"launcher: step {install['step']}/{len(edited.steps)} RUN "))
        assert line.endswith(": cached"), line
    finally:
        remove_image(docker_client, edited.tag)


def test_gpu_image_builds_offline_for_the_host_in_a_probe_file(
        docker_client: Any, standin_image: str, wheelhouse: Path,
        image_labels: dict[str, str], tmp_path: Path) -> None:
    # As a CI job builds for a GPU server: the server's `launcher probe --json` (an H100 on
    # driver 580 → cu130), not this GPU-less host. The stand-in is passed in place of
    # nvidia/cuda, by its own name; the offline wheelhouse has only the CPU torch.
    probe = tmp_path / "gpu-server.json"
    probe.write_text(json.dumps({
        "nvml": True, "reason": None, "driver_version": "580.65.06",
        "cuda_driver_version": "13.0", "warnings": [],
        "gpus": [{"index": 0, "uuid": "GPU-h100", "name": "NVIDIA H100 80GB HBM3",
                  "memory_total_bytes": 85899345920, "compute_capability": "9.0",
                  "mig_enabled": False, "brand": "nvidia"}]}))
    image = launcher_build("--probe-file", str(probe), "--base-image", standin_image,
                           "--wheelhouse", str(wheelhouse), labels=image_labels)
    try:
        assert image.tag.startswith("gpu-launcher/service:gpu-")
        assert (f"launcher: for the host in {probe}: driver 580.65.06 runs CUDA ≤ 13.0; GPUs: "
                "NVIDIA H100 80GB HBM3 (sm_90)") in image.stderr
        assert "→ nvidia/cuda:13.0.2-runtime-ubuntu24.04 with cu130 (torch 2.13.0+cu130)" in (
            image.stderr)
        assert "only a CPU torch wheel; the GPU image will run torch on the CPU" in image.stderr
        # The build ran with that host's choice (its index), and the torch it installed is
        # named: the wheelhouse's CPU build, never a guess.
        config = docker_client.images.get(image.tag).attrs["Config"]
        assert config["Labels"]["org.gpu-launcher.torch-index-url"] == (
            "https://download.pytorch.org/whl/cu130")
        assert config["Labels"]["org.gpu-launcher.torch-variant"] == "cpu"
        env = dict(e.split("=", 1) for e in config["Env"])
        assert (env["NVIDIA_VISIBLE_DEVICES"], env["NVIDIA_DRIVER_CAPABILITIES"]) == (
            "all", "compute,utility")
        assert config["User"] == "10001:10001"
        assert config["Labels"][OCI + "base.name"] == standin_image
        container = docker_client.containers.run(
            image.tag, ["python", "-c", "import torch, service; print(torch.__version__)"],
            detach=True, read_only=True, labels=TEST_LABEL, name=unique("images-gpu"),
            network_mode="none")
        try:
            assert container.wait(timeout=120)["StatusCode"] == 0
            out = container.logs(stdout=True, stderr=False)
        finally:
            container.remove(force=True, v=True)  # and its anonymous /models, /data volumes
        assert out.decode().strip().startswith("2.13.0")
    finally:
        remove_image(docker_client, image.tag)


def test_a_base_image_that_cannot_be_pulled_is_named_with_the_flags_that_help(
        docker_client: Any) -> None:
    from tests.clihelpers import run_launcher

    base = f"127.0.0.1:{free_port()}/glt-none:1"  # nothing listens there: as offline
    tag = f"{unique('glt-pull')}:test"
    result = run_launcher("build", "--base-image", base, "--tag", tag, "--label",
                          "org.gpu-launcher.test=1", timeout=120)
    lines = result.stderr.splitlines()
    assert (result.returncode, result.stdout) == (1, ""), result.stderr
    assert lines[-2].startswith(f"launcher: error: building {tag}: the base image {base} is not "
                                "on the engine and cannot be pulled: ")
    assert lines[-1] == ("hint: pull it where a registry answers, or name an image that is on "
                         "the engine with --base-image (docker images lists them); offline, add "
                         "--wheelhouse DIR for the Python packages")
    assert all(line.startswith("launcher: ") for line in lines[:-1]), lines  # no engine lines
    assert docker_client.images.list(name=tag) == []
