"""``launcher probe``: in-process through the fake NVML, and as a real process on this host."""

from __future__ import annotations

import json

import pytest

from launcher import cmd_probe
from launcher._cli import build_parser
from tests.clihelpers import has_nvml, run_launcher
from tests.fakenvml import FakeGpu, FakeNvml, loader


def test_probe_prints_a_line_per_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    nvml = FakeNvml([FakeGpu(), FakeGpu(name="NVIDIA A100-SXM4-40GB", uuid="GPU-a100",
                                        compute_capability=(8, 0), memory_total=40 * 1024**3,
                                        mig_mode=(1, 1))])
    assert cmd_probe.run(build_parser().parse_args(["probe"]), load=loader(nvml)) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "driver 550.54.15, CUDA ≤ 12.4",
        ("GPU 0: NVIDIA H100 80GB HBM3 (sm_90, 80 GiB, MIG off) "
        "GPU-00000000-0000-0000-0000-000000000000"),
        "  torch 2.13.0 wheels: cu126 (sm_90), cu130 (sm_90), cu132 (sm_90, experimental)",
        "GPU 1: NVIDIA A100-SXM4-40GB (sm_80, 40 GiB, MIG on) GPU-a100",
        "  torch 2.13.0 wheels: cu126 (sm_80), cu130 (sm_80), cu132 (sm_80, experimental)",
    ]
    assert err == ""


def test_probe_json_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    nvml = FakeNvml([FakeGpu()], driver="580.65.06", cuda=13000)
    assert cmd_probe.run(build_parser().parse_args(["probe", "--json"]), load=loader(nvml)) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["driver_version"], data["cuda_driver_version"]) == ("580.65.06", "13.0")
    assert data["gpus"][0]["compute_capability"] == "9.0"


@pytest.mark.skipif(has_nvml(), reason="this host has NVML; see tests/gpu/test_probe_gpu.py")
def test_probe_without_a_gpu_is_an_empty_list_exit_0() -> None:
    result = run_launcher("probe", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["gpus"] == [] and data["nvml"] is False
    assert result.stderr == f"launcher: no GPUs: {data['reason']}\n"
    human = run_launcher("probe")
    assert (human.returncode, human.stdout) == (0, "no NVIDIA GPUs (no NVML)\n")


@pytest.mark.parametrize("gpu, wheels, line", [
    (FakeGpu(name="Tesla V100-SXM2-16GB", compute_capability=(7, 0)),
     [{"wheel": "cu126", "code": "sm_70", "stable": True}],
     "  torch 2.13.0 wheels: cu126 (sm_70)"),
    (FakeGpu(name="NVIDIA GeForce RTX 4090", compute_capability=(8, 9)),
     [{"wheel": "cu126", "code": "sm_86", "stable": True},
      {"wheel": "cu130", "code": "sm_86", "stable": True},
      {"wheel": "cu132", "code": "sm_86", "stable": False}],
     "  torch 2.13.0 wheels: cu126 (sm_86), cu130 (sm_86), cu132 (sm_86, experimental)"),
    (FakeGpu(name="NVIDIA GeForce RTX 5090", compute_capability=(12, 0)),
     [{"wheel": "cu130", "code": "sm_120", "stable": True},
      {"wheel": "cu132", "code": "sm_120", "stable": False}],
     "  torch 2.13.0 wheels: cu130 (sm_120), cu132 (sm_120, experimental)"),
    (FakeGpu(name="Tesla K80", compute_capability=(3, 7)), [],
     "  torch 2.13.0 wheels: none has kernels for it"),
], ids=["volta", "ada", "blackwell", "kepler"])
def test_probe_shows_which_wheels_cover_each_gpu(gpu: FakeGpu, wheels: list[dict[str, object]],
                                                 line: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    nvml = FakeNvml([gpu], driver="580.65.06", cuda=13000)
    assert cmd_probe.run(build_parser().parse_args(["probe", "--json"]), load=loader(nvml)) == 0
    assert json.loads(capsys.readouterr().out)["gpus"][0]["torch_wheels"] == wheels
    assert cmd_probe.run(build_parser().parse_args(["probe"]), load=loader(nvml)) == 0
    assert capsys.readouterr().out.splitlines()[2] == line
