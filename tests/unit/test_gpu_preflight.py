"""The GPU checks before a container starts: the image's NVIDIA_REQUIRE_CUDA against the probed
driver (real strings from nvidia/cuda images), CUDA_VISIBLE_DEVICES in the container's env, and
systemd's cgroup driver with /dev/char lacking the NVIDIA device nodes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from launcher._gpu_preflight import (
    cuda_visible_devices_warning,
    dev_char_warning,
    host_facts,
    image_requirement_error,
    nvidia_device_nodes,
)
from launcher._probe import GpuInfo, Probe
from launcher._require import HostFacts
from tests.unit.test_require import REAL


def host(driver: str, cuda: tuple[int, int] | None, brand: str | None = "geforcertx",
         capability: tuple[int, int] = (12, 0)) -> Probe:
    gpu = GpuInfo(0, "GPU-0", "NVIDIA GeForce RTX 5090", 32 << 30, capability, None, brand)
    return Probe(driver, cuda, (gpu,))


def test_host_facts_are_what_the_toolkit_compares() -> None:
    assert host_facts(host("575.57.08", (12, 9))) == HostFacts("575.57.08", "12.9", "12.0",
                                                               "geforcertx")
    # no CUDA from NVML: the table's, from the driver version
    assert host_facts(host("570.124.06", None)).cuda == "12.8"


def test_an_image_the_driver_cannot_start_is_an_error_with_a_hint() -> None:
    env = ["PATH=/usr/bin", f"NVIDIA_REQUIRE_CUDA={REAL['13.0']}"]
    error = image_requirement_error("nvidia/cuda:13.0.2-runtime-ubuntu24.04", env,
                                    host("575.57.08", (12, 9)))
    assert error is not None and error.exit_code == 1
    assert error.message == (
        "image nvidia/cuda:13.0.2-runtime-ubuntu24.04 will not start here: the NVIDIA Container "
        "Toolkit checks its NVIDIA_REQUIRE_CUDA: driver 575.57.08 (CUDA 12.9), brand geforcertx "
        "satisfies neither cuda>=13.0 nor any of its 60 other alternatives")
    assert error.hint == ("install an NVIDIA driver that runs CUDA 13.0, or build for this "
                          "driver: drop --base-image and --cuda to let the launcher choose")


@pytest.mark.parametrize("requirement, upgrade", [
    ("cuda>=12.8,driver>=570", "install an NVIDIA driver that runs CUDA 12.8"),
    ("driver>=570", "install a newer NVIDIA driver"),
], ids=["cuda-and-driver-in-one-term", "driver-only"])
def test_the_hint_names_the_cuda_the_image_needs(requirement: str, upgrade: str) -> None:
    error = image_requirement_error("img", [f"NVIDIA_REQUIRE_CUDA={requirement}"],
                                    host("550.54.15", (12, 4)))
    assert error is not None
    assert error.hint == (f"{upgrade}, or build for this driver: drop --base-image and --cuda "
                          "to let the launcher choose")


@pytest.mark.parametrize("cuda, probe", [
    ("13.0", host("580.65.06", (13, 0))),
    ("13.0", host("575.57.08", (12, 9), brand="tesla")),  # forward compatibility: datacenter
    ("12.8", host("570.124.06", (12, 8))),
], ids=["native", "tesla-575-branch", "12.8-on-570"])
def test_images_the_driver_starts_pass(cuda: str, probe: Probe) -> None:
    assert image_requirement_error("img", [f"NVIDIA_REQUIRE_CUDA={REAL[cuda]}"], probe) is None


@pytest.mark.parametrize("env", [
    ["PATH=/usr/bin"],  # not an nvidia/cuda image (e.g. the stand-in)
    [f"NVIDIA_REQUIRE_CUDA={REAL['13.0']}", "NVIDIA_DISABLE_REQUIRE=1"],
], ids=["no-requirement", "disabled"])
def test_no_requirement_no_check(env: list[str]) -> None:
    assert image_requirement_error("img", env, host("470.256.02", (11, 4))) is None


def test_a_malformed_requirement_is_reported() -> None:
    error = image_requirement_error("img", ["NVIDIA_REQUIRE_CUDA=cuda>=x"], host("580.1", (13, 0)))
    assert error is not None
    assert error.message == ("image img has a malformed requirement the NVIDIA Container Toolkit "
                             "refuses: NVIDIA_REQUIRE_CUDA: invalid value 'x' in 'cuda>=x': "
                             "expected a version")


@pytest.mark.parametrize("container_env, image_env, warning", [
    (["DEVICE=cuda", "CUDA_VISIBLE_DEVICES=1"], [],
     ("CUDA_VISIBLE_DEVICES=1 is set in the container's environment (from -e/--env-file): "
     "inside, the --gpus devices are numbered from 0, so this selects other GPUs than you "
     "meant, or none; select GPUs with --gpus '\"device=...\"' and leave CUDA_VISIBLE_DEVICES "
     "unset")),
    (["DEVICE=cuda"], ["PATH=/bin", "CUDA_VISIBLE_DEVICES=0,1"],
     ("CUDA_VISIBLE_DEVICES=0,1 is set in the container's environment (from the image): "
     "inside, the --gpus devices are numbered from 0, so this selects other GPUs than you "
     "meant, or none; select GPUs with --gpus '\"device=...\"' and leave CUDA_VISIBLE_DEVICES "
     "unset")),
    (["DEVICE=cuda", "NVIDIA_VISIBLE_DEVICES=all"], ["PATH=/bin"], None),
], ids=["from-e", "from-image", "none"])
def test_cuda_visible_devices_in_the_container_is_warned(container_env: list[str],
                                                        image_env: list[str],
                                                        warning: str | None) -> None:
    assert cuda_visible_devices_warning(container_env, image_env) == warning


NODES = {"/dev/nvidia0": "195:0", "/dev/nvidiactl": "195:255", "/dev/nvidia-uvm": "508:0"}


@pytest.mark.parametrize("driver, dev_char, warning", [
    ("systemd", ["1:3", "195:0"],
     ("the engine uses the systemd cgroup driver and /dev/char has no link to /dev/nvidiactl, "
     "/dev/nvidia-uvm: after a 'systemctl daemon-reload' the container loses its GPUs (\"Failed "
     "to initialize NVML: Unknown Error\"); fix it once on this host: sudo nvidia-ctk system "
     "create-dev-char-symlinks --create-all")),
    ("systemd", ["195:0", "195:255", "508:0"], None),
    ("cgroupfs", [], None),
    (None, [], None),
], ids=["systemd-missing", "systemd-complete", "cgroupfs", "unknown"])
def test_dev_char_warning(driver: str | None, dev_char: list[str], warning: str | None) -> None:
    assert dev_char_warning(driver, NODES, dev_char) == warning


def test_no_nvidia_nodes_no_warning() -> None:
    assert dev_char_warning("systemd", {}, []) is None


def test_nvidia_device_nodes_reads_character_devices(tmp_path: Path) -> None:
    (tmp_path / "nvidia0").symlink_to("/dev/null")  # a character device: 1:3 on Linux
    (tmp_path / "nvidia-caps").mkdir()
    (tmp_path / "nvidiactl").write_text("")  # a plain file is not a device node
    null = os.stat("/dev/null").st_rdev
    assert nvidia_device_nodes(tmp_path) == {
        str(tmp_path / "nvidia0"): f"{os.major(null)}:{os.minor(null)}"}
