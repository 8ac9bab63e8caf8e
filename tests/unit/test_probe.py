"""``probe_host`` through the fake NVML seam (nvidia-ml-py's API and error classes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pynvml
import pytest

from launcher._errors import UsageError
from launcher._probe import probe_from_json, probe_host, read_probe_file
from tests.fakenvml import NOT_SUPPORTED, FakeGpu, FakeNvml, loader

H100 = FakeGpu()
A100_MIG = FakeGpu(name="NVIDIA A100-SXM4-40GB", uuid="GPU-a100", compute_capability=(8, 0),
                   memory_total=40 * 1024**3, mig_mode=(1, 1))
V100 = FakeGpu(name="Tesla V100-SXM2-16GB", uuid="GPU-v100", compute_capability=(7, 0),
               memory_total=16 * 1024**3, mig_mode=NOT_SUPPORTED)
RTX5090 = FakeGpu(name="NVIDIA GeForce RTX 5090", uuid="GPU-5090", compute_capability=(12, 0),
                  brand=pynvml.NVML_BRAND_GEFORCE_RTX)


def gpu_json(index: int, g: FakeGpu, mig: bool | None) -> dict[str, Any]:
    return {"index": index, "uuid": g.uuid, "name": g.name, "memory_total_bytes": g.memory_total,
            "compute_capability": f"{g.compute_capability[0]}.{g.compute_capability[1]}",
            "mig_enabled": mig, "brand": "tesla"}


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


@pytest.mark.parametrize("brand, name", [
    (pynvml.NVML_BRAND_GEFORCE_RTX, "geforcertx"), (pynvml.NVML_BRAND_NVIDIA, "nvidia"),
    (pynvml.NVML_BRAND_UNKNOWN, None), (NOT_SUPPORTED, None),
], ids=["geforcertx", "nvidia", "unknown", "not-supported"])
def test_probe_reads_the_brand_as_the_toolkit_names_it(brand: Any, name: str | None) -> None:
    result = probe_host(loader(FakeNvml([FakeGpu(brand=brand)])))
    assert result.gpus[0].brand == name


def test_a_probe_reads_back_from_its_own_json() -> None:
    probe = probe_host(loader(FakeNvml([H100, RTX5090], driver="580.65.06", cuda=13000)))
    assert probe_from_json(json.loads(json.dumps(probe.to_json()))) == probe


OK_GPU = {"index": 0, "uuid": "GPU-1", "name": "Tesla V100", "compute_capability": "7.0"}
BAD_PROBES = [
    ("not-an-object", [], "the top level is list, expected an object"),
    ("no-gpus-key", {"driver_version": "580.65.06"}, '"gpus" is missing'),
    ("gpus-not-a-list", {"gpus": "all"}, '"gpus" is "all", expected a list'),
    ("capability-not-x-y", {"driver_version": "580.65.06",
                            "gpus": [{**OK_GPU, "compute_capability": "7"}]},
     '"gpus"[0]."compute_capability" is "7", expected MAJOR.MINOR such as "9.0"'),
    ("capability-a-number", {"driver_version": "580.65.06",
                             "gpus": [{**OK_GPU, "compute_capability": 7.0}]},
     '"gpus"[0]."compute_capability" is 7.0, expected MAJOR.MINOR such as "9.0"'),
    ("gpu-without-uuid", {"driver_version": "580.65.06",
                          "gpus": [{k: v for k, v in OK_GPU.items() if k != "uuid"}]},
     '"gpus"[0]."uuid" is missing'),
    ("index-a-string", {"driver_version": "580.65.06", "gpus": [{**OK_GPU, "index": "0"}]},
     '"gpus"[0]."index" is "0", expected an integer'),
    ("gpus-without-driver", {"gpus": [OK_GPU]},
     '"driver_version" is missing, and the host has GPUs'),
    ("bad-cuda", {"driver_version": "580.65.06", "cuda_driver_version": "13", "gpus": []},
     '"cuda_driver_version" is "13", expected MAJOR.MINOR such as "9.0"'),
]


@pytest.mark.parametrize("data, message", [b[1:] for b in BAD_PROBES],
                         ids=[b[0] for b in BAD_PROBES])
def test_bad_probe_json_names_the_key(data: Any, message: str) -> None:
    with pytest.raises(ValueError) as info:
        probe_from_json(data)
    assert str(info.value) == message


def test_probe_file_errors_are_usage_errors(tmp_path: Path) -> None:
    hint = "pass the output of 'launcher probe --json' run on the target host"
    cases = [
        (tmp_path / "missing.json", None,
         (f'invalid argument "{tmp_path}/missing.json" for "--probe-file" flag: No such file '
          "or directory")),
        (tmp_path / "text.json", "driver 580",
         (f'invalid argument "{tmp_path}/text.json" for "--probe-file" flag: not JSON: '
          "Expecting value: line 1 column 1 (char 0)")),
        (tmp_path / "list.json", "[]",
         (f'invalid argument "{tmp_path}/list.json" for "--probe-file" flag: the top level is '
          "list, expected an object")),
    ]
    for path, text, message in cases:
        if text is not None:
            path.write_text(text)
        with pytest.raises(UsageError) as info:
            read_probe_file(path)
        assert (info.value.message, info.value.hint, info.value.exit_code) == (message, hint, 2)


def test_an_old_probe_file_without_brand_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "probe.json"
    path.write_text(json.dumps({"nvml": True, "reason": None, "driver_version": "550.54.15",
                                "cuda_driver_version": "12.4", "gpus": [OK_GPU],
                                "warnings": []}))
    probe = read_probe_file(path)
    assert (probe.driver_version, probe.cuda_driver_version) == ("550.54.15", (12, 4))
    assert (probe.gpus[0].compute_capability, probe.gpus[0].brand) == ((7, 0), None)
