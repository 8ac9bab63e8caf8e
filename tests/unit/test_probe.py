"""``probe_host`` through the fake NVML seam (nvidia-ml-py's API and error classes)."""

from __future__ import annotations

from typing import Any

import pytest

from launcher._probe import probe_host
from tests.fakenvml import NOT_SUPPORTED, FakeGpu, FakeNvml, loader

H100 = FakeGpu()
A100_MIG = FakeGpu(name="NVIDIA A100-SXM4-40GB", uuid="GPU-a100", compute_capability=(8, 0),
                   memory_total=40 * 1024**3, mig_mode=(1, 1))
V100 = FakeGpu(name="Tesla V100-SXM2-16GB", uuid="GPU-v100", compute_capability=(7, 0),
               memory_total=16 * 1024**3, mig_mode=NOT_SUPPORTED)


def gpu_json(index: int, g: FakeGpu, mig: bool | None) -> dict[str, Any]:
    return {"index": index, "uuid": g.uuid, "name": g.name, "memory_total_bytes": g.memory_total,
            "compute_capability": f"{g.compute_capability[0]}.{g.compute_capability[1]}",
            "mig_enabled": mig}


SCENARIOS = [
    ("hopper-550", FakeNvml([H100]), "550.54.15", "12.4", [gpu_json(0, H100, False)]),
    ("hopper-580", FakeNvml([H100], driver="580.65.06", cuda=13000), "580.65.06", "13.0",
     [gpu_json(0, H100, False)]),
    ("ampere-mig", FakeNvml([A100_MIG], driver="570.124.06", cuda=12080), "570.124.06", "12.8",
     [gpu_json(0, A100_MIG, True)]),
    ("two-different", FakeNvml([H100, V100], driver="580.65.06", cuda=13000), "580.65.06",
     "13.0", [gpu_json(0, H100, False), gpu_json(1, V100, None)]),
    ("driver-no-gpus", FakeNvml([]), "550.54.15", "12.4", []),
]


@pytest.mark.parametrize("nvml, driver, cuda, gpus", [s[1:] for s in SCENARIOS],
                         ids=[s[0] for s in SCENARIOS])
def test_probe_reads_driver_and_gpus(nvml: FakeNvml, driver: str, cuda: str,
                                     gpus: list[dict[str, Any]]) -> None:
    result = probe_host(loader(nvml))
    assert result.to_json() == {"nvml": True, "reason": None, "driver_version": driver,
                                "cuda_driver_version": cuda, "gpus": gpus, "warnings": []}
    assert nvml.calls["nvmlShutdown"] == 1


def test_probe_without_library_is_an_empty_list_and_the_reason() -> None:
    result = probe_host(loader(FakeNvml([], library_missing=True)))
    assert result.to_json() == {
        "nvml": False,
        "reason": "NVML library (libnvidia-ml.so.1) not found: no NVIDIA driver on this host",
        "driver_version": None, "cuda_driver_version": None, "gpus": [], "warnings": []}


def test_probe_skips_a_lost_gpu_with_a_warning() -> None:
    lost = FakeGpu(uuid="GPU-lost", lost=True)
    result = probe_host(loader(FakeNvml([lost, V100], driver="580.65.06", cuda=13000)))
    assert [g.uuid for g in result.gpus] == ["GPU-v100"]
    assert result.warnings == ("GPU 0 skipped: NVML: GPU is lost",)
    assert result.gpus[0].index == 1
