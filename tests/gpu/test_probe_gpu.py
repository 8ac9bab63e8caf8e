"""On a host with an NVIDIA GPU: the real NVML probe, and the plan it leads to."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from typing import Any

import pytest

from launcher._cuda import TORCH_VERSION, CudaChoice, GpuNeed, NoCudaFits, choose_cuda, cuda_table
from launcher._probe import probe_from_json, probe_host
from tests.conftest import ROOT

pytestmark = [pytest.mark.gpu]


def run_launcher(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "launcher", *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


def test_real_probe_reads_driver_and_gpus() -> None:
    probe = probe_host()
    assert probe.reason is None and probe.driver_version
    assert probe.cuda_driver_version is not None and probe.cuda_driver_version >= (11, 0)
    assert probe.gpus
    for gpu in probe.gpus:
        assert gpu.uuid.startswith(("GPU-", "MIG-")) and gpu.name
        assert gpu.memory_total > 0 and gpu.compute_capability >= (3, 0)


@pytest.mark.skipif(shutil.which("nvidia-smi") is None, reason="no nvidia-smi to compare with")
def test_probe_agrees_with_nvidia_smi() -> None:
    smi = subprocess.run(
        ["nvidia-smi", "--query-gpu=index,uuid,name,driver_version", "--format=csv,noheader"],
        capture_output=True, text=True, timeout=60, check=True)
    rows = [[c.strip() for c in line.split(",")] for line in smi.stdout.strip().splitlines()]
    result = run_launcher("probe", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [(str(g["index"]), g["uuid"], g["name"]) for g in data["gpus"]] == [
        (r[0], r[1], r[2]) for r in rows]
    assert data["driver_version"] == rows[0][3]


def host_choice(probe: dict[str, Any]) -> CudaChoice | NoCudaFits:
    """What ``up --gpus all`` should choose on the host ``probe`` (``launcher probe --json``)
    describes: the CUDA table's choice for its driver and every GPU, or the refusal."""
    host = probe_from_json(probe)
    try:
        return choose_cuda(cuda_table(), host.driver_version, host.cuda_driver_version,
                           [GpuNeed(g.name, g.compute_capability) for g in host.gpus])
    except NoCudaFits as refusal:
        return refusal


def test_up_gpus_all_plans_a_gpu_image_or_says_which_driver_to_install() -> None:
    probed = run_launcher("probe", "--json")
    assert probed.returncode == 0, probed.stderr
    probe = json.loads(probed.stdout)
    expected = host_choice(probe)
    result = run_launcher("up", "--gpus", "all", "--dry-run", "--json")
    if isinstance(expected, NoCudaFits):  # an old driver or a GPU no wheel covers: refused
        assert result.returncode == 1, (expected.hint, result.stdout)
        assert ("hint: install an NVIDIA driver " in result.stderr
                or "wheel has kernels for" in result.stderr), result.stderr
        assert expected.hint in result.stderr, (expected.hint, result.stderr)
        return
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["gpu"] is True and plan["dockerfile"] == "Dockerfile.gpu"
    assert plan["create"]["HostConfig"]["DeviceRequests"][0]["Count"] == -1
    assert plan["build_args"]["CUDA_IMAGE"].startswith("nvidia/cuda:")
    assert plan["build_args"]["TORCH_VARIANT"] == plan["cuda"]["wheel"] == expected.wheel
    assert plan["cuda"]["torch"] == f"{TORCH_VERSION}+{plan['cuda']['wheel']}"
    assert plan["cuda"]["explanation"] in result.stderr
    # the wheel it chose has kernels for every GPU, as `launcher probe --json` lists them
    for gpu in probe["gpus"]:
        assert plan["cuda"]["wheel"] in {w["wheel"] for w in gpu["torch_wheels"]}, gpu
