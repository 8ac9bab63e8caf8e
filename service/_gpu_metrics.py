"""GPU telemetry for Prometheus, read from NVML when Prometheus scrapes (no polling thread).

The collector takes its NVML loader (:func:`service.nvml.load_nvml`, or a fake in the tests), so
a test registers it on a fresh ``CollectorRegistry`` and reads samples with
``get_sample_value``. Units are base units: bytes, watts, joules, celsius, ratios 0-1.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service.nvml import NvmlUnavailable

__all__ = ["NvmlCollector"]

_GPU_LABELS = ("gpu", "uuid", "name")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Device:
    label: str  # "0" for GPU 0, "0/1" for MIG slice 1 on GPU 0
    handle: Any
    uuid: str
    name: str


# name -> (type, help). Counters are named without _total; prometheus_client appends it.
_GPU_FAMILIES: dict[str, tuple[str, str]] = {
    "predictor_gpu_utilization_ratio": (
        "gauge", "Fraction of the last sample period a kernel ran on the GPU (0-1)."),
    "predictor_gpu_memory_utilization_ratio": (
        "gauge", "Fraction of the last sample period device memory was read or written (0-1)."),
    "predictor_gpu_memory_used_bytes": (
        "gauge", "Device memory allocated by processes (excludes the driver's reservation)."),
    "predictor_gpu_memory_total_bytes": ("gauge", "Device memory installed."),
    "predictor_gpu_power_watts": ("gauge", "Power draw."),
    "predictor_gpu_power_limit_watts": ("gauge", "Enforced power limit."),
    "predictor_gpu_energy_joules": ("counter", "Energy consumed since the driver loaded."),
    "predictor_gpu_temperature_celsius": ("gauge", "Core temperature."),
    "predictor_gpu_process_memory_used_bytes": (
        "gauge", "Device memory used by this service process, where NVML can tell."),
}


class NvmlCollector(Collector):
    """GPU telemetry read from NVML when Prometheus scrapes.

    NVML is loaded once, on the first scrape, and device handles are reused until a call fails
    (then the next scrape enumerates again). No NVML at all: only ``predictor_gpus 0``. A field
    a board or MIG slice does not support is left out; any other NVML error drops that device
    from this scrape and counts in ``predictor_gpu_scrape_errors_total``: never an exception.
    """

    def __init__(self, nvml_loader: Callable[[], Any], pid: int | None = None) -> None:
        self._loader = nvml_loader
        self._pid = os.getpid() if pid is None else pid
        self._lock = threading.Lock()  # scrapes may run concurrently in a threadpool
        self._nvml: Any = None
        self._loaded = False
        self._devices: list[_Device] | None = None
        self._gpu_count = 0
        self._memory_v2 = True
        self.errors = 0
        self.unavailable_reason: str | None = None

    def describe(self) -> Iterable[Metric]:
        yield GaugeMetricFamily("predictor_gpus", "")
        yield CounterMetricFamily("predictor_gpu_scrape_errors", "")
        for name, (kind, _) in _GPU_FAMILIES.items():
            family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            yield family(name, "")

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            try:
                samples = self._scrape()
            except Exception:  # a scrape must never fail; the log says why
                log.exception("GPU metrics scrape failed")
                self.errors += 1
                self._devices = None
                samples = {}
            gpus = GaugeMetricFamily("predictor_gpus", "GPUs NVML reports (0 without NVML).",
                                     value=self._gpu_count)
            errors = CounterMetricFamily(
                "predictor_gpu_scrape_errors",
                "NVML errors during scrapes (GPU lost, driver reloaded); the scrape went on.",
                value=self.errors)
        yield gpus
        yield errors
        for name, (kind, doc) in _GPU_FAMILIES.items():
            rows = samples.get(name)
            if not rows:
                continue
            family = (CounterMetricFamily(name, doc, labels=_GPU_LABELS) if kind == "counter"
                      else GaugeMetricFamily(name, doc, labels=_GPU_LABELS))
            for labels, value in rows:
                family.add_metric(labels, value)
            yield family

    def _scrape(self) -> dict[str, list[tuple[list[str], float]]]:
        nvml = self._load()
        samples: dict[str, list[tuple[list[str], float]]] = {}
        if nvml is None:
            return samples
        errors = self.errors
        if self._devices is None:
            self._devices = self._enumerate(nvml)
        for device in self._devices:
            try:
                values = self._read(nvml, device)
            except Exception as exc:  # NVML's errors are expected; anything else is logged
                if not isinstance(exc, nvml.NVMLError):
                    log.exception("reading GPU %s failed", device.label)
                self._failed(nvml, exc)
                continue
            labels = [device.label, device.uuid, device.name]
            for name, value in values:
                samples.setdefault(name, []).append((labels, value))
        if self.errors != errors:
            self._devices = None  # enumerate again next scrape: a GPU may be back or renumbered
        return samples

    def _failed(self, nvml: Any, exc: Exception) -> None:
        self.errors += 1
        if isinstance(exc, (nvml.NVMLError_Uninitialized, nvml.NVMLError_DriverNotLoaded)):
            self._loaded = False  # the driver was reloaded: initialise NVML again next scrape

    def _load(self) -> Any:
        if not self._loaded:
            self._loaded = True
            self._nvml = None
            try:
                self._nvml = self._loader()
            except NvmlUnavailable as exc:
                self.unavailable_reason = str(exc)
                self._gpu_count = 0
        return self._nvml

    def _enumerate(self, nvml: Any) -> list[_Device]:
        devices: list[_Device] = []
        try:
            self._gpu_count = int(nvml.nvmlDeviceGetCount())
        except nvml.NVMLError as exc:
            self._gpu_count = 0
            self._failed(nvml, exc)
            return devices
        for index in range(self._gpu_count):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                devices.append(_describe(nvml, str(index), handle))
                devices.extend(_mig_slices(nvml, index, handle))
            except nvml.NVMLError as exc:
                self._failed(nvml, exc)
        return devices

    def _read(self, nvml: Any, device: _Device) -> list[tuple[str, float]]:
        handle = device.handle
        values: list[tuple[str, float]] = []
        utilization = _call(nvml, nvml.nvmlDeviceGetUtilizationRates, handle)
        if utilization is not None:
            values.append(("predictor_gpu_utilization_ratio", utilization.gpu / 100))
            values.append(("predictor_gpu_memory_utilization_ratio", utilization.memory / 100))
        memory = self._memory(nvml, handle)
        if memory is not None:
            values.append(("predictor_gpu_memory_used_bytes", float(memory.used)))
            values.append(("predictor_gpu_memory_total_bytes", float(memory.total)))
        for name, call, scale in (
            ("predictor_gpu_power_watts", nvml.nvmlDeviceGetPowerUsage, 1e-3),  # mW
            ("predictor_gpu_power_limit_watts", nvml.nvmlDeviceGetEnforcedPowerLimit, 1e-3),
            ("predictor_gpu_energy_joules", nvml.nvmlDeviceGetTotalEnergyConsumption, 1e-3),  # mJ
        ):
            value = _call(nvml, call, handle)
            if value is not None:
                values.append((name, value * scale))
        temperature = _call(
            nvml, nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU)
        if temperature is not None:
            values.append(("predictor_gpu_temperature_celsius", float(temperature)))
        processes = _call(nvml, nvml.nvmlDeviceGetComputeRunningProcesses, handle)
        for process in processes or ():
            if process.pid == self._pid and process.usedGpuMemory is not None:
                values.append(("predictor_gpu_process_memory_used_bytes",
                               float(process.usedGpuMemory)))
        return values

    def _memory(self, nvml: Any, handle: Any) -> Any:
        # v2 reports `used` without the driver's reservation; drivers before 510 lack it.
        version = getattr(nvml, "nvmlMemory_v2", None)
        if self._memory_v2 and version is not None:
            try:
                return nvml.nvmlDeviceGetMemoryInfo(handle, version=version)
            except nvml.NVMLError_FunctionNotFound:
                self._memory_v2 = False  # the driver has no v2 at all: stop asking
            except nvml.NVMLError_NotSupported:
                pass  # this device only (a MIG slice, an old board): v1 below
        return _call(nvml, nvml.nvmlDeviceGetMemoryInfo, handle)


def _call(nvml: Any, function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)``; None when NVML says the field is not supported here."""
    try:
        return function(*args)
    except nvml.NVMLError_NotSupported:
        return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _describe(nvml: Any, label: str, handle: Any) -> _Device:
    return _Device(label, handle, _text(nvml.nvmlDeviceGetUUID(handle)),
                   _text(nvml.nvmlDeviceGetName(handle)))


def _mig_slices(nvml: Any, index: int, handle: Any) -> list[_Device]:
    try:
        current, _pending = nvml.nvmlDeviceGetMigMode(handle)
    except nvml.NVMLError_NotSupported:
        return []
    if current != nvml.NVML_DEVICE_MIG_ENABLE:
        return []
    slices = []
    for slot in range(int(nvml.nvmlDeviceGetMaxMigDeviceCount(handle))):
        try:
            mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
        except nvml.NVMLError_NotFound:
            continue  # an empty slot
        slices.append(_describe(nvml, f"{index}/{slot}", mig))
    return slices
