"""``up``'s checks of a GPU image before its container exists, against a fake engine (the
EngineAPI Protocol): the image's real NVIDIA_REQUIRE_CUDA against the probed driver, and the
warnings for CUDA_VISIBLE_DEVICES in the image and systemd cgroups without /dev/char links."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from launcher import _up
from launcher._engine import EngineInfo
from launcher._errors import LauncherError
from launcher._gpus import parse_gpus
from launcher._options import PlanOptions
from launcher._plan import Plan, make_plan
from launcher._probe import GpuInfo, Probe
from tests.fakeengine import FakeEngineBase
from tests.unit.test_require import REAL

RTX5090 = GpuInfo(0, "GPU-5090", "NVIDIA GeForce RTX 5090", 32 << 30, (12, 0), None,
                  "geforcertx")


@dataclass
class ImageEngine(FakeEngineBase):
    env: list[str] = field(default_factory=list)
    cgroup_driver: str = "cgroupfs"
    inspected: list[str] = field(default_factory=list)

    def inspect_image(self, ref: str) -> dict[str, Any]:
        self.inspected.append(ref)
        return {"Id": "sha256:1", "Config": {"Env": self.env}}

    def info(self) -> EngineInfo:
        return EngineInfo("20.10.24", "1.41", ("nvidia", "runc"), "runc", (), "",
                          self.cgroup_driver)


def gpu_plan(probe: Probe) -> Plan:
    opts = PlanOptions(name="svc", gpus=(parse_gpus("all"),), gpus_raw=("all",))
    return make_plan(opts, probe, tag=lambda *_: "img:1")


def test_an_image_the_driver_cannot_start_stops_up_before_the_container() -> None:
    # The user's --base-image (a CUDA 13 image) on a 575 driver: the toolkit would refuse it.
    probe = Probe("575.57.08", (12, 9), (RTX5090,))
    plan = gpu_plan(Probe("580.65.06", (13, 0), (RTX5090,)))  # planned for another driver
    engine = ImageEngine(env=["PATH=/usr/bin", f"NVIDIA_REQUIRE_CUDA={REAL['13.0']}"])
    with pytest.raises(LauncherError) as info:
        _up.check_gpu_image(engine, plan, probe, _up.UpPolicy(remote=True))
    assert info.value.message == (
        "image img:1 will not start here: the NVIDIA Container Toolkit checks its "
        "NVIDIA_REQUIRE_CUDA: driver 575.57.08 (CUDA 12.9), brand geforcertx satisfies neither "
        "cuda>=13.0 nor any of its 60 other alternatives")
    assert info.value.hint == ("install an NVIDIA driver that runs CUDA 13.0, or build for this "
                               "driver: drop --base-image and --cuda to let the launcher choose")
    assert engine.inspected == ["img:1"]


def test_an_image_the_driver_starts_passes_quietly(capsys: pytest.CaptureFixture[str]) -> None:
    probe = Probe("580.65.06", (13, 0), (RTX5090,))
    engine = ImageEngine(env=[f"NVIDIA_REQUIRE_CUDA={REAL['13.0']}"])
    _up.check_gpu_image(engine, gpu_plan(probe), probe, _up.UpPolicy(remote=True))
    assert capsys.readouterr().err == ""


def test_cuda_visible_devices_in_the_image_is_warned(capsys: pytest.CaptureFixture[str]) -> None:
    probe = Probe("580.65.06", (13, 0), (RTX5090,))
    engine = ImageEngine(env=["CUDA_VISIBLE_DEVICES=1"])
    _up.check_gpu_image(engine, gpu_plan(probe), probe, _up.UpPolicy(remote=True))
    assert capsys.readouterr().err == (
        "launcher: warning: CUDA_VISIBLE_DEVICES=1 is set in the container's environment (from "
        "the image): inside, the --gpus devices are numbered from 0, so this selects other GPUs "
        "than you meant, or none; select GPUs with --gpus '\"device=...\"' and leave "
        "CUDA_VISIBLE_DEVICES unset\n")


def test_systemd_without_dev_char_links_is_warned_on_a_local_engine(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(_up, "nvidia_device_nodes", lambda: {"/dev/nvidia0": "195:0"})
    monkeypatch.setattr(_up, "dev_char_entries", lambda: ["1:3"])
    probe = Probe("580.65.06", (13, 0), (RTX5090,))
    engine = ImageEngine(cgroup_driver="systemd")
    _up.check_gpu_image(engine, gpu_plan(probe), probe, _up.UpPolicy())
    assert capsys.readouterr().err == (
        "launcher: warning: the engine uses the systemd cgroup driver and /dev/char has no link "
        "to /dev/nvidia0: after a 'systemctl daemon-reload' the container loses its GPUs "
        "(\"Failed to initialize NVML: Unknown Error\"); fix it once on this host: sudo "
        "nvidia-ctk system create-dev-char-symlinks --create-all\n")
    _up.check_gpu_image(engine, gpu_plan(probe), probe, _up.UpPolicy(remote=True))
    assert capsys.readouterr().err == ""  # a remote engine's /dev is not this host's


def test_a_cpu_plan_is_not_checked() -> None:
    plan = make_plan(PlanOptions(name="svc"), None, tag=lambda *_: "img:1")
    _up.check_gpu_image(FakeEngineBase(), plan, None, _up.UpPolicy())  # no engine call at all


def test_up_refuses_before_it_creates_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    @dataclass
    class Engine(ImageEngine):
        def image_id(self, ref: str) -> str | None:
            return "sha256:1"  # the image is there; creating volumes or containers would fail

    probe = Probe("575.57.08", (12, 9), (RTX5090,))
    opts = PlanOptions(name="svc", gpus=(parse_gpus("all"),), gpus_raw=("all",))
    plan = gpu_plan(Probe("580.65.06", (13, 0), (RTX5090,)))
    engine = Engine(env=[f"NVIDIA_REQUIRE_CUDA={REAL['13.0']}"])
    monkeypatch.setattr(_up, "connect", lambda: engine)
    with pytest.raises(LauncherError, match="will not start here"):
        _up.up(plan, opts, _up.UpPolicy(remote=True), probe)
    assert engine.inspected == ["img:1"]
