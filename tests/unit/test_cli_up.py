"""``launcher up``'s plan path: real processes on this GPU-less host, and in-process runs
through the fake NVML for the GPU decisions (stderr explains, stdout is only data)."""

from __future__ import annotations

import json

import pytest

from launcher._cli import main
from tests.clihelpers import assert_fails, has_nvml, run_launcher
from tests.fakenvml import FakeGpu, FakeNvml, loader

no_gpu_here = pytest.mark.skipif(has_nvml(), reason="this host has NVML")


@no_gpu_here
def test_up_gpus_all_dry_run_json_falls_back_to_cpu_with_a_warning() -> None:
    result = run_launcher("up", "--gpus", "all", "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)  # stdout is only the JSON
    assert plan["gpu"] is False and plan["dockerfile"] == "Dockerfile"
    assert plan["create"]["HostConfig"]["DeviceRequests"] is None
    assert plan["image"].startswith("gpu-launcher/service:cpu-")
    assert "launcher: warning: --gpus all: no GPU found (NVML library" in result.stderr
    assert "Traceback" not in result.stderr


@no_gpu_here
def test_up_require_gpu_without_a_gpu_exits_1_with_the_toolkit_hint() -> None:
    result = run_launcher("up", "--gpus", "all", "--require-gpu", "--dry-run", "--json")
    assert (result.returncode, result.stdout) == (1, "")
    lines = result.stderr.splitlines()
    assert lines[0].startswith("launcher: error: --gpus all --require-gpu: no GPU found (")
    assert lines[1].startswith("hint: install the NVIDIA driver and the NVIDIA Container Toolkit")


def test_up_no_probe_takes_gpus_as_given() -> None:
    result = run_launcher("up", "--gpus", '"device=0,1"', "--no-probe", "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["create"]["HostConfig"]["DeviceRequests"] == [
        {"Driver": "", "Count": 0, "DeviceIDs": ["0", "1"], "Capabilities": [["gpu"]],
         "Options": {}}]
    assert plan["build_args"]["CUDA_IMAGE"] == "nvidia/cuda:12.6.3-runtime-ubuntu24.04"
    assert plan["build_args"]["TORCH_VARIANT"] == "cu126"
    assert result.stderr.startswith("launcher: not probed (--no-probe); driver and GPUs unknown: "
                                    "cu126 by default (sm_50…sm_90, any driver ≥ 525.60.13; pin "
                                    "another with --cuda)")


@pytest.mark.parametrize("argv, first_line", [
    (["--gpus", "count=x"], ('launcher: error: invalid argument "count=x" for "--gpus" flag: '
                            'invalid count (x): value must be either "all" or an integer: '
                            "invalid syntax")),
    (["-p", "99999:8000"], ('launcher: error: invalid argument "99999:8000" for "--publish" '
                           "flag: invalid hostPort: 99999")),
    (["--bogus"], "launcher: error: unrecognized arguments: --bogus"),
], ids=["gpus", "publish", "unknown-flag"])
def test_up_bad_values_exit_2_echoing_the_value(argv: list[str], first_line: str) -> None:
    result = run_launcher("up", "--dry-run", *argv)
    assert (result.returncode, result.stdout) == (2, "")
    lines = result.stderr.splitlines()
    assert lines[0] == first_line
    assert lines[1].startswith("hint: ") and len(lines) == 2


NO_ENGINE = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}  # touched: exit 1, not 2


TIMEOUT_HINT = "hint: how long up waits for the service, in seconds, e.g. --timeout 180"


@pytest.mark.parametrize("argv, stderr", [
    (["--timeout", "-5"], [('launcher: error: invalid argument "-5" for "--timeout" flag: must '
                            "be a number of seconds above 0"), TIMEOUT_HINT]),
    (["--timeout=0"], [('launcher: error: invalid argument "0" for "--timeout" flag: must be a '
                        "number of seconds above 0"), TIMEOUT_HINT]),
    (["--json"], ["launcher: error: --json prints the plan, and needs --dry-run",
                  "hint: add --dry-run: launcher up --dry-run --json"]),
], ids=["negative-timeout", "zero-timeout", "json-without-dry-run"])
def test_up_refuses_before_touching_the_engine(argv: list[str], stderr: list[str]) -> None:
    assert_fails(run_launcher("up", "--no-probe", *argv, env=NO_ENGINE), 2, stderr)


def up_in_process(nvml: FakeNvml, *argv: str) -> int:
    return main(["up", "--dry-run", "--json", *argv], load=loader(nvml))


def test_up_explains_the_cuda_choice_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    assert up_in_process(FakeNvml([FakeGpu()], driver="580.65.06", cuda=13000),
                         "--gpus", "all") == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["cuda"]["wheel"] == "cu130"
    assert err == ("launcher: driver 580.65.06 runs CUDA ≤ 13.0; GPUs: NVIDIA H100 80GB HBM3 "
                   "(sm_90); torch 2.13.0 stable wheels: cu130 (sm_75…sm_120+PTX), cu126 "
                   "(sm_50…sm_90); cu130 runs natively → nvidia/cuda:13.0.2-runtime-ubuntu24.04 "
                   "with cu130 (torch 2.13.0+cu130)\n")


def test_up_refuses_blackwell_on_550_with_the_driver_hint(
        capsys: pytest.CaptureFixture[str]) -> None:
    blackwell = FakeGpu(name="NVIDIA B200", compute_capability=(10, 0))
    assert up_in_process(FakeNvml([blackwell]), "--gpus", "all") == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == ("launcher: error: driver 550.54.15 runs CUDA ≤ 12.4; GPUs: NVIDIA B200 "
                   "(sm_100); torch 2.13.0 stable wheels: cu130 (sm_75…sm_120+PTX), cu126 "
                   "(sm_50…sm_90); cu130: needs a driver ≥ 580; cu126: no code for sm_100 → "
                   "none fits: install an NVIDIA driver ≥ 580\n"
                   "hint: install an NVIDIA driver ≥ 580 (for cu130), or run on CPU without "
                   "--gpus\n")


def test_port_is_scripts_runs_variable_not_ups_and_the_readme_says_so() -> None:
    from tests.conftest import ROOT

    result = run_launcher("up", "--dry-run", "--json", env={"PORT": "9999"})
    assert result.returncode == 0, result.stderr
    bindings = json.loads(result.stdout)["create"]["HostConfig"]["PortBindings"]
    assert bindings == {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8000"}]}
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "Another host port: `PORT=N scripts/run` (the script's own variable; `launcher up` " \
           "itself takes `-p 127.0.0.1:N:8000`)" in readme
