"""``--probe-file``: plan (``up --dry-run --json``) or build for another host from its
``launcher probe --json``, as a real process on this GPU-less host. The files are what the probe
prints there, made here through the fake NVML seam."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pynvml
import pytest

from launcher._probe import probe_host
from launcher.cmd_probe import probe_json
from tests.clihelpers import assert_fails, run_launcher
from tests.fakenvml import FakeGpu, FakeNvml, loader

P100 = FakeGpu(name="Tesla P100-PCIE-16GB", uuid="GPU-p100", compute_capability=(6, 0))
V100 = FakeGpu(name="Tesla V100-SXM2-16GB", uuid="GPU-v100", compute_capability=(7, 0))
H100 = FakeGpu(name="NVIDIA H100 80GB HBM3", uuid="GPU-h100", compute_capability=(9, 0))
RTX4090 = FakeGpu(name="NVIDIA GeForce RTX 4090", uuid="GPU-4090", compute_capability=(8, 9),
                  brand=pynvml.NVML_BRAND_GEFORCE_RTX)
RTX5090 = FakeGpu(name="NVIDIA GeForce RTX 5090", uuid="GPU-5090", compute_capability=(12, 0),
                  brand=pynvml.NVML_BRAND_GEFORCE_RTX)
K80 = FakeGpu(name="Tesla K80", uuid="GPU-k80", compute_capability=(3, 7))
ALL = {"Driver": "", "Count": -1, "DeviceIDs": None, "Capabilities": [["gpu"]], "Options": {}}


def probe_file(tmp_path: Path, gpus: list[FakeGpu], driver: str, cuda: int) -> Path:
    """What ``launcher probe --json`` prints on that host."""
    path = tmp_path / "probe.json"
    path.write_text(json.dumps(probe_json(probe_host(loader(FakeNvml(gpus, driver, cuda)))),
                    indent=2))
    return path


# (id, GPUs, driver, CUDA from NVML, extra flags, wheel, image, device requests)
HOSTS = [
    ("pascal-volta-580", [P100, V100], "580.65.06", 13000, [], "cu126",
     "nvidia/cuda:12.6.3-runtime-ubuntu24.04", [ALL]),
    ("hopper-580", [H100], "580.65.06", 13000, [], "cu130",
     "nvidia/cuda:13.0.2-runtime-ubuntu24.04", [ALL]),
    ("hopper-volta-580", [H100, V100], "580.65.06", 13000, [], "cu126",
     "nvidia/cuda:12.6.3-runtime-ubuntu24.04", [ALL]),
    ("hopper-volta-580-only-the-hopper", [H100, V100], "580.65.06", 13000,
     ["--gpus", "device=GPU-h100"], "cu130", "nvidia/cuda:13.0.2-runtime-ubuntu24.04",
     [{**ALL, "Count": 0, "DeviceIDs": ["GPU-h100"]}]),
    ("ada-550", [RTX4090], "550.54.15", 12040, [], "cu126",
     "nvidia/cuda:12.4.1-runtime-ubuntu22.04", [ALL]),
    ("hopper-580-pinned-experimental", [H100], "580.65.06", 13000, ["--cuda", "13.2"], "cu132",
     "nvidia/cuda:13.0.2-runtime-ubuntu24.04", [ALL]),
]


@pytest.mark.parametrize("gpus, driver, cuda, extra, wheel, image, requests",
                         [h[1:] for h in HOSTS], ids=[h[0] for h in HOSTS])
def test_up_dry_run_json_plans_for_the_host_in_the_file(
        tmp_path: Path, gpus: list[FakeGpu], driver: str, cuda: int, extra: list[str],
        wheel: str, image: str, requests: list[dict[str, Any]]) -> None:
    path = probe_file(tmp_path, gpus, driver, cuda)
    gpus_flag = [] if "--gpus" in extra else ["--gpus", "all"]
    result = run_launcher("up", *gpus_flag, *extra, "--dry-run", "--json", "--probe-file",
                          str(path))
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert (plan["cuda"]["wheel"], plan["cuda"]["image"]) == (wheel, image)
    assert plan["cuda"]["torch"] == f"2.13.0+{wheel}"
    assert plan["build_args"] == {"CUDA_IMAGE": image, "TORCH_VARIANT": wheel,
                                  "TORCH_INDEX_URL": f"https://download.pytorch.org/whl/{wheel}"}
    assert plan["create"]["HostConfig"]["DeviceRequests"] == requests
    assert plan["create"]["Env"] == ["DEVICE=cuda"]
    assert result.stderr.startswith(f"launcher: for the host in {path}: driver {driver} runs ")
    assert result.stderr.splitlines()[0].endswith(f"with {wheel} (torch 2.13.0+{wheel})")


REFUSED = [
    ("consumer-blackwell-575", [RTX5090], "575.57.08", 12090,
     "hint: install an NVIDIA driver ≥ 580 (for cu130), or run on CPU without --gpus"),
    ("kepler-470", [K80], "470.256.02", 11040,
     ("hint: no torch 2.13.0 wheel has kernels for Tesla K80 (sm_37): leave it out with "
      "--gpus '\"device=...\"', or run on CPU without --gpus")),
]


@pytest.mark.parametrize("gpus, driver, cuda, hint", [r[1:] for r in REFUSED],
                         ids=[r[0] for r in REFUSED])
def test_up_refuses_a_host_no_wheel_runs_on_exit_1(tmp_path: Path, gpus: list[FakeGpu],
                                                   driver: str, cuda: int, hint: str) -> None:
    result = run_launcher("up", "--gpus", "all", "--dry-run", "--json", "--probe-file",
                          str(probe_file(tmp_path, gpus, driver, cuda)))
    assert (result.returncode, result.stdout) == (1, "")
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"launcher: error: for the host in {tmp_path}/probe.json: "
                               f"driver {driver} runs CUDA ≤ ")
    assert lines[1:] == [hint]


BAD_FILES = [
    ("missing", None, "No such file or directory"),
    ("not-json", "GPU 0: Tesla V100", "not JSON: Expecting value: line 1 column 1 (char 0)"),
    ("bad-capability", json.dumps({"driver_version": "580.65.06", "gpus": [
        {"index": 0, "uuid": "GPU-1", "name": "V100", "compute_capability": "7"}]}),
     '"gpus"[0]."compute_capability" is "7", expected MAJOR.MINOR such as "9.0"'),
]


@pytest.mark.parametrize("command", ["up", "build"])
@pytest.mark.parametrize("text, message", [b[1:] for b in BAD_FILES], ids=[b[0] for b in BAD_FILES])
def test_a_bad_probe_file_is_exit_2_naming_what_is_wrong(tmp_path: Path, command: str,
                                                         text: str | None, message: str) -> None:
    path = tmp_path / "probe.json"
    if text is not None:
        path.write_text(text)
    flags = ["--gpus", "all", "--dry-run"] if command == "up" else ["--gpu"]
    result = run_launcher(command, *flags, "--probe-file", str(path))
    assert_fails(result, 2, [
        f'launcher: error: invalid argument "{path}" for "--probe-file" flag: {message}',
        "hint: pass the output of 'launcher probe --json' run on the target host"])


def test_probe_file_and_no_probe_exclude_each_other(tmp_path: Path) -> None:
    path = probe_file(tmp_path, [H100], "580.65.06", 13000)
    result = run_launcher("up", "--gpus", "all", "--dry-run", "--no-probe", "--probe-file",
                          str(path))
    assert result.returncode == 2
    assert "argument --probe-file: not allowed with argument --no-probe" in result.stderr


def test_build_probe_file_of_a_host_without_gpus_is_exit_1(tmp_path: Path) -> None:
    path = probe_file(tmp_path, [], "580.65.06", 13000)
    result = run_launcher("build", "--probe-file", str(path))
    assert_fails(result, 1, [
        f"launcher: error: --probe-file {path}: the host has no GPUs (it lists no GPUs)",
        "hint: build the CPU image: drop --gpu and --probe-file"])


def test_up_without_gpus_ignores_the_probe_file_with_a_warning(tmp_path: Path) -> None:
    path = probe_file(tmp_path, [H100], "580.65.06", 13000)
    result = run_launcher("up", "--dry-run", "--json", "--probe-file", str(path))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["gpu"] is False
    assert (f"launcher: warning: --probe-file {path} ignored: this is a CPU plan (add --gpus)"
            in result.stderr.splitlines())
