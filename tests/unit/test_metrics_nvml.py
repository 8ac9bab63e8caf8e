"""NvmlCollector against the fake NVML: real pynvml error classes, fresh registry per test."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from service._gpu_metrics import NvmlCollector
from tests.fakenvml import NOT_SUPPORTED, FakeGpu, FakeNvml, loader

GIB = 1024**3
H100 = {"name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-aaaa"}
L4 = {"name": "NVIDIA L4", "uuid": "GPU-bbbb", "memory_total": 24 * GIB,
      "memory_used": 3 * GIB, "utilization_gpu": 100, "utilization_memory": 50,
      "power_mw": 72_000, "power_limit_mw": 72_000, "energy_mj": 1_500, "temperature_c": 77}


def scrape(nvml: FakeNvml, pid: int = 4242) -> tuple[CollectorRegistry, NvmlCollector]:
    registry = CollectorRegistry()
    collector = NvmlCollector(loader(nvml), pid=pid)
    registry.register(collector)
    return registry, collector


def gpu(registry: CollectorRegistry, name: str, index: str, uuid: str, model: str) -> float | None:
    return registry.get_sample_value(name, {"gpu": index, "uuid": uuid, "name": model})


TWO_GPUS = [
    ("predictor_gpu_utilization_ratio", "0", 0.37, 1.0),
    ("predictor_gpu_memory_utilization_ratio", "0", 0.12, 0.5),
    ("predictor_gpu_memory_used_bytes", "0", 1 * GIB, 3 * GIB),  # v2: reserved excluded
    ("predictor_gpu_memory_total_bytes", "0", 80 * GIB, 24 * GIB),
    ("predictor_gpu_power_watts", "0", 123.456, 72.0),
    ("predictor_gpu_power_limit_watts", "0", 700.0, 72.0),
    ("predictor_gpu_energy_joules_total", "0", 9876.543, 1.5),
    ("predictor_gpu_temperature_celsius", "0", 41.0, 77.0),
]


@pytest.mark.parametrize(("metric", "_index", "first", "second"), TWO_GPUS,
                         ids=[row[0] for row in TWO_GPUS])
def test_two_gpus_in_base_units(metric: str, _index: str, first: float, second: float) -> None:
    registry, _ = scrape(FakeNvml([FakeGpu(**H100), FakeGpu(**L4)]))  # type: ignore[arg-type]
    assert gpu(registry, metric, "0", "GPU-aaaa", H100["name"]) == pytest.approx(first)
    assert gpu(registry, metric, "1", "GPU-bbbb", "NVIDIA L4") == pytest.approx(second)
    assert registry.get_sample_value("predictor_gpus") == 2
    assert registry.get_sample_value("predictor_gpu_scrape_errors_total") == 0


def test_nvml_initialised_once_and_handles_reused() -> None:
    nvml = FakeNvml([FakeGpu(**H100), FakeGpu(**L4)])  # type: ignore[arg-type]
    registry, _ = scrape(nvml)
    for _ in range(3):
        registry.get_sample_value("predictor_gpus")  # every read is a full scrape
    assert nvml.calls["nvmlInit"] == 1
    assert nvml.calls["nvmlDeviceGetHandleByIndex"] == 2
    assert nvml.calls["nvmlDeviceGetPowerUsage"] == 6


def test_mig_slice_has_its_own_series_and_skips_unsupported_fields() -> None:
    mig = FakeGpu(name="NVIDIA H100 80GB HBM3 MIG 1g.10gb", uuid="MIG-cccc",
                  memory_total=10 * GIB, memory_used=2 * GIB, utilization_gpu=NOT_SUPPORTED,
                  power_mw=NOT_SUPPORTED, power_limit_mw=NOT_SUPPORTED,
                  energy_mj=NOT_SUPPORTED, temperature_c=NOT_SUPPORTED)
    parent = FakeGpu(**H100, mig_mode=(1, 1), mig_slices=[mig])  # type: ignore[arg-type]
    registry, _ = scrape(FakeNvml([parent]))
    slice_labels = ("0/0", "MIG-cccc", mig.name)
    assert gpu(registry, "predictor_gpu_memory_used_bytes", *slice_labels) == 2 * GIB
    assert gpu(registry, "predictor_gpu_memory_total_bytes", *slice_labels) == 10 * GIB
    for absent in ("predictor_gpu_utilization_ratio", "predictor_gpu_power_watts",
                   "predictor_gpu_energy_joules_total", "predictor_gpu_temperature_celsius"):
        assert gpu(registry, absent, *slice_labels) is None, absent
    assert gpu(registry, "predictor_gpu_power_watts", "0", "GPU-aaaa", H100["name"]) == 123.456
    assert registry.get_sample_value("predictor_gpus") == 1  # slices are not extra GPUs
    assert registry.get_sample_value("predictor_gpu_scrape_errors_total") == 0


NOT_SUPPORTED_FIELDS = [
    ("utilization", {"utilization_gpu": NOT_SUPPORTED},
     ["predictor_gpu_utilization_ratio", "predictor_gpu_memory_utilization_ratio"]),
    ("power", {"power_mw": NOT_SUPPORTED}, ["predictor_gpu_power_watts"]),
    ("power-limit", {"power_limit_mw": NOT_SUPPORTED}, ["predictor_gpu_power_limit_watts"]),
    ("energy", {"energy_mj": NOT_SUPPORTED}, ["predictor_gpu_energy_joules_total"]),
    ("temperature", {"temperature_c": NOT_SUPPORTED}, ["predictor_gpu_temperature_celsius"]),
]


@pytest.mark.parametrize(("fields", "absent"), [row[1:] for row in NOT_SUPPORTED_FIELDS],
                         ids=[row[0] for row in NOT_SUPPORTED_FIELDS])
def test_not_supported_field_is_skipped_alone(fields: dict[str, str], absent: list[str]) -> None:
    registry, _ = scrape(FakeNvml([FakeGpu(**H100, **fields)]))  # type: ignore[arg-type]
    for metric, *_ in TWO_GPUS:
        value = gpu(registry, metric, "0", "GPU-aaaa", H100["name"])
        assert (value is None) == (metric in absent), metric
    assert registry.get_sample_value("predictor_gpu_scrape_errors_total") == 0


def test_lost_gpu_mid_scrape_counts_an_error_and_keeps_the_others() -> None:
    gpus = [FakeGpu(**H100), FakeGpu(**L4)]  # type: ignore[arg-type]
    nvml = FakeNvml(gpus)
    registry, _ = scrape(nvml)
    assert gpu(registry, "predictor_gpu_temperature_celsius", "1", "GPU-bbbb", "NVIDIA L4") == 77
    gpus[1].lost = True
    assert gpu(registry, "predictor_gpu_temperature_celsius", "1", "GPU-bbbb", "NVIDIA L4") is None
    assert gpu(registry, "predictor_gpu_temperature_celsius", "0", "GPU-aaaa", H100["name"]) == 41
    assert registry.get_sample_value("predictor_gpus") == 2
    # one error per scrape while it is gone: every get_sample_value above is a scrape
    assert registry.get_sample_value("predictor_gpu_scrape_errors_total") == 4
    gpus[1].lost = False  # back after a reset: found again by a fresh enumeration
    assert gpu(registry, "predictor_gpu_temperature_celsius", "1", "GPU-bbbb", "NVIDIA L4") == 77
    assert nvml.calls["nvmlInit"] == 1


def test_driver_reload_reinitialises_nvml() -> None:
    nvml = FakeNvml([FakeGpu(**H100)])  # type: ignore[arg-type]
    registry, _ = scrape(nvml)
    assert registry.get_sample_value("predictor_gpus") == 1
    nvml.nvmlShutdown()  # device calls now raise NVMLError_Uninitialized
    assert gpu(registry, "predictor_gpu_temperature_celsius", "0", "GPU-aaaa", H100["name"]) is None
    assert registry.get_sample_value("predictor_gpu_scrape_errors_total") == 1
    assert gpu(registry, "predictor_gpu_temperature_celsius", "0", "GPU-aaaa", H100["name"]) == 41
    assert registry.get_sample_value("predictor_gpu_scrape_errors_total") == 1
    assert nvml.calls["nvmlInit"] == 2


def test_no_library_reports_zero_gpus_and_no_error() -> None:
    nvml = FakeNvml([], library_missing=True)
    registry, collector = scrape(nvml)
    assert registry.get_sample_value("predictor_gpus") == 0
    assert registry.get_sample_value("predictor_gpu_scrape_errors_total") == 0
    assert registry.get_sample_value("predictor_gpu_temperature_celsius") is None
    assert collector.unavailable_reason == (
        "NVML library (libnvidia-ml.so.1) not found: no NVIDIA driver on this host")
    registry.get_sample_value("predictor_gpus")
    assert nvml.calls["nvmlInit"] == 1  # not retried on every scrape


def test_no_gpus_reports_zero() -> None:
    registry, _ = scrape(FakeNvml([]))
    assert registry.get_sample_value("predictor_gpus") == 0
    assert registry.get_sample_value("predictor_gpu_scrape_errors_total") == 0


PROCESS_MEMORY = [
    ("ours", [(4242, 5 * GIB), (99, GIB)], 5 * GIB),
    ("not-ours", [(99, GIB)], None),  # e.g. a container: NVML reports host PIDs
    ("unknown-amount", [(4242, None)], None),  # MIG or no permission: usedGpuMemory N/A
]


@pytest.mark.parametrize(("processes", "expected"), [row[1:] for row in PROCESS_MEMORY],
                         ids=[row[0] for row in PROCESS_MEMORY])
def test_this_process_gpu_memory(processes: list[tuple[int, int | None]],
                                 expected: float | None) -> None:
    registry, _ = scrape(FakeNvml([FakeGpu(**H100, processes=processes)]))  # type: ignore[arg-type]
    value = gpu(registry, "predictor_gpu_process_memory_used_bytes", "0", "GPU-aaaa", H100["name"])
    assert value == expected


def test_memory_v1_where_v2_is_not_supported(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = FakeNvml([FakeGpu(**H100)])  # type: ignore[arg-type]
    api: Any = nvml  # pynvml's error classes and constants, read off the fake
    v1 = nvml.nvmlDeviceGetMemoryInfo

    def v2_not_supported(handle: object, version: int | None = None) -> object:
        if version is not None:
            raise api.NVMLError(api.NVML_ERROR_NOT_SUPPORTED)
        return v1(handle)

    monkeypatch.setattr(nvml, "nvmlDeviceGetMemoryInfo", v2_not_supported)
    registry, _ = scrape(nvml)
    used = gpu(registry, "predictor_gpu_memory_used_bytes", "0", "GPU-aaaa", H100["name"])
    assert used == GIB + 512 * 1024**2  # v1: the driver's reservation included


def test_unexpected_exception_drops_that_gpu_and_the_scrape_goes_on(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    nvml = FakeNvml([FakeGpu(**H100), FakeGpu(**L4)])  # type: ignore[arg-type]
    power = nvml.nvmlDeviceGetPowerUsage

    def broken_on_l4(handle: FakeGpu) -> int:
        if handle.name == "NVIDIA L4":
            raise RuntimeError("binding bug")
        return power(handle)

    monkeypatch.setattr(nvml, "nvmlDeviceGetPowerUsage", broken_on_l4)
    registry, _ = scrape(nvml)
    assert registry.get_sample_value("predictor_gpu_scrape_errors_total") == 1  # first scrape
    assert gpu(registry, "predictor_gpu_power_watts", "0", "GPU-aaaa", H100["name"]) == 123.456
    assert gpu(registry, "predictor_gpu_temperature_celsius", "1", "GPU-bbbb", "NVIDIA L4") is None
    assert "reading GPU 1 failed" in caplog.text


def test_driver_gone_after_a_reload_reports_zero_gpus() -> None:
    nvml = FakeNvml([FakeGpu(**H100)])  # type: ignore[arg-type]
    registry, collector = scrape(nvml)
    assert registry.get_sample_value("predictor_gpus") == 1
    nvml.nvmlShutdown()
    nvml.library_missing = True  # the driver was unloaded and not loaded again
    assert registry.get_sample_value("predictor_gpu_scrape_errors_total") == 1
    assert registry.get_sample_value("predictor_gpus") == 0
    assert collector.unavailable_reason == (
        "NVML library (libnvidia-ml.so.1) not found: no NVIDIA driver on this host")
