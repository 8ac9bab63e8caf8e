"""A fake NVML with nvidia-ml-py's API, for hosts without a GPU.

It stands behind the one seam (`service.nvml.load_nvml`'s return value): the same function
names, the same units (mW, mJ, bytes, percent) and pynvml's own error classes, so code that
handles the real `pynvml.NVMLError_NotSupported` / `NVMLError_GpuIsLost` is exercised as is.
Scenarios are plain data: a list of `FakeGpu`, each optionally with MIG slices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pynvml

NOT_SUPPORTED = "not-supported"  # a field value that makes the getter raise NVMLError_NotSupported


@dataclass
class FakeGpu:
    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    compute_capability: tuple[int, int] = (9, 0)
    memory_total: int = 80 * 1024**3
    memory_used: int = 1 * 1024**3
    memory_reserved: int = 512 * 1024**2
    utilization_gpu: Any = 37  # percent, or NOT_SUPPORTED
    utilization_memory: Any = 12
    power_mw: Any = 123_456
    power_limit_mw: Any = 700_000
    energy_mj: Any = 9_876_543
    temperature_c: Any = 41
    mig_mode: Any = (0, 0)  # (current, pending), or NOT_SUPPORTED
    brand: Any = pynvml.NVML_BRAND_TESLA  # nvmlBrandType_t, or NOT_SUPPORTED
    processes: list[tuple[int, int | None]] = field(default_factory=list)  # (pid, used bytes)
    mig_slices: list[FakeGpu] = field(default_factory=list)
    lost: bool = False  # every getter raises NVMLError_GpuIsLost (GPU fell off the bus)


@dataclass(eq=False)
class FakeNvml:
    """Module-like object: `FakeNvml(gpus, driver="550.54.15", cuda=12040)`.

    `library_missing=True` makes `nvmlInit` raise `NVMLError_LibraryNotFound`, as on a host
    without the driver. `calls` counts every API call (tests check handles are reused).
    """

    gpus: list[FakeGpu]
    driver: str = "550.54.15"
    cuda: int = 12040
    library_missing: bool = False
    initialised: bool = field(default=False, init=False)
    calls: dict[str, int] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        # pynvml's constants and error classes, so consumers read them off this object
        for name in dir(pynvml):
            if name.startswith(("NVMLError", "NVML_", "nvmlMemory_v")):
                setattr(self, name, getattr(pynvml, name))

    def _count(self, fn: str) -> None:
        self.calls[fn] = self.calls.get(fn, 0) + 1

    def _gpu(self, handle: Any, fn: str) -> FakeGpu:
        self._count(fn)
        if not self.initialised:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)
        if not isinstance(handle, FakeGpu):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        if handle.lost:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        return handle

    @staticmethod
    def _value(value: Any) -> Any:
        if value == NOT_SUPPORTED:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return value

    # --- library ---
    def nvmlInit(self) -> None:
        self._count("nvmlInit")
        if self.library_missing:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
        self.initialised = True

    def nvmlShutdown(self) -> None:
        self._count("nvmlShutdown")
        self.initialised = False

    def nvmlSystemGetDriverVersion(self) -> str:
        self._count("nvmlSystemGetDriverVersion")
        return self.driver

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._count("nvmlSystemGetCudaDriverVersion")
        return self.cuda

    def nvmlDeviceGetCount(self) -> int:
        self._count("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        self._count("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.gpus):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return self.gpus[index]

    # --- per device ---
    def nvmlDeviceGetName(self, h: Any) -> str:
        return self._gpu(h, "nvmlDeviceGetName").name

    def nvmlDeviceGetUUID(self, h: Any) -> str:
        return self._gpu(h, "nvmlDeviceGetUUID").uuid

    def nvmlDeviceGetCudaComputeCapability(self, h: Any) -> tuple[int, int]:
        return self._gpu(h, "nvmlDeviceGetCudaComputeCapability").compute_capability

    def nvmlDeviceGetBrand(self, h: Any) -> int:
        return int(self._value(self._gpu(h, "nvmlDeviceGetBrand").brand))

    def nvmlDeviceGetMigMode(self, h: Any) -> tuple[int, int]:
        return tuple(self._value(self._gpu(h, "nvmlDeviceGetMigMode").mig_mode))  # type: ignore[return-value]

    def nvmlDeviceGetMemoryInfo(self, h: Any, version: int | None = None) -> SimpleNamespace:
        g = self._gpu(h, "nvmlDeviceGetMemoryInfo")
        if version is None:  # v1: used includes the driver's reservation
            return SimpleNamespace(total=g.memory_total, used=g.memory_used + g.memory_reserved,
                                   free=g.memory_total - g.memory_used - g.memory_reserved)
        return SimpleNamespace(version=version, total=g.memory_total, reserved=g.memory_reserved,
                               used=g.memory_used,
                               free=g.memory_total - g.memory_used - g.memory_reserved)

    def nvmlDeviceGetUtilizationRates(self, h: Any) -> SimpleNamespace:
        g = self._gpu(h, "nvmlDeviceGetUtilizationRates")
        return SimpleNamespace(gpu=self._value(g.utilization_gpu),
                               memory=self._value(g.utilization_memory))

    def nvmlDeviceGetPowerUsage(self, h: Any) -> int:
        return int(self._value(self._gpu(h, "nvmlDeviceGetPowerUsage").power_mw))

    def nvmlDeviceGetEnforcedPowerLimit(self, h: Any) -> int:
        return int(self._value(self._gpu(h, "nvmlDeviceGetEnforcedPowerLimit").power_limit_mw))

    def nvmlDeviceGetTotalEnergyConsumption(self, h: Any) -> int:
        return int(self._value(self._gpu(h, "nvmlDeviceGetTotalEnergyConsumption").energy_mj))

    def nvmlDeviceGetTemperature(self, h: Any, sensor: int) -> int:
        g = self._gpu(h, "nvmlDeviceGetTemperature")
        if sensor != pynvml.NVML_TEMPERATURE_GPU:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return int(self._value(g.temperature_c))

    def nvmlDeviceGetComputeRunningProcesses(self, h: Any) -> list[SimpleNamespace]:
        g = self._gpu(h, "nvmlDeviceGetComputeRunningProcesses")
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in g.processes]

    # --- MIG ---
    def nvmlDeviceIsMigDeviceHandle(self, h: Any) -> int:
        self._count("nvmlDeviceIsMigDeviceHandle")
        return int(any(h is s for g in self.gpus for s in g.mig_slices))

    def nvmlDeviceGetMaxMigDeviceCount(self, h: Any) -> int:
        g = self._gpu(h, "nvmlDeviceGetMaxMigDeviceCount")
        if self._value(g.mig_mode)[0] != pynvml.NVML_DEVICE_MIG_ENABLE:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return 7

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h: Any, index: int) -> FakeGpu:
        g = self._gpu(h, "nvmlDeviceGetMigDeviceHandleByIndex")
        if index >= len(g.mig_slices):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
        return g.mig_slices[index]


def loader(nvml: FakeNvml):  # type: ignore[no-untyped-def]
    """A `load_nvml` stand-in: initialise the fake, or raise NvmlUnavailable like the real one."""
    from service.nvml import NvmlUnavailable

    def load() -> FakeNvml:
        try:
            nvml.nvmlInit()
        except pynvml.NVMLError_LibraryNotFound:
            raise NvmlUnavailable(
                "NVML library (libnvidia-ml.so.1) not found: no NVIDIA driver on this host"
            ) from None
        return nvml

    return load
