"""What the host's GPUs are, read through NVML (the loader from :mod:`service.nvml`).

No NVML (no driver, no library) is a fact, not an error: an empty GPU list and the reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from service.nvml import NvmlUnavailable, load_nvml

__all__ = ["GpuInfo", "Probe", "parse_probe_json", "probe_host"]


@dataclass(frozen=True)
class GpuInfo:
    index: int
    uuid: str
    name: str
    memory_total: int  # bytes
    compute_capability: tuple[int, int]
    mig_enabled: bool | None  # None: the GPU has no MIG

    def to_json(self) -> dict[str, Any]:
        major, minor = self.compute_capability
        return {"index": self.index, "uuid": self.uuid, "name": self.name,
                "memory_total_bytes": self.memory_total,
                "compute_capability": f"{major}.{minor}", "mig_enabled": self.mig_enabled}


@dataclass(frozen=True)
class Probe:
    driver_version: str | None
    cuda_driver_version: tuple[int, int] | None  # the newest CUDA the driver runs
    gpus: tuple[GpuInfo, ...]
    reason: str | None = None  # why there is no NVML, when there is none
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        cuda = self.cuda_driver_version
        return {
            "nvml": self.reason is None,
            "reason": self.reason,
            "driver_version": self.driver_version,
            "cuda_driver_version": f"{cuda[0]}.{cuda[1]}" if cuda else None,
            "gpus": [g.to_json() for g in self.gpus],
            "warnings": list(self.warnings),
        }


def parse_probe_json(text: str) -> Probe:
    """:meth:`Probe.to_json` as ``launcher probe --json`` prints it (from a container on a
    remote engine) → :class:`Probe`. The container's log mixes in its stderr lines: the JSON is
    the object from the line "{"."""
    # Here, not at the top: the remote probe copies this module alone into the service image.
    from launcher._errors import LauncherError

    try:
        start = 0 if text.startswith("{") else text.index("\n{\n") + 1
        raw, _ = json.JSONDecoder().raw_decode(text, start)
        cuda = raw.get("cuda_driver_version")
        gpus = tuple(
            GpuInfo(index=int(g["index"]), uuid=str(g["uuid"]), name=str(g["name"]),
                    memory_total=int(g["memory_total_bytes"]),
                    compute_capability=_version(g["compute_capability"]),
                    mig_enabled=g.get("mig_enabled"))
            for g in raw.get("gpus") or ())
        return Probe(raw.get("driver_version"), _version(cuda) if cuda else None, gpus,
                     reason=raw.get("reason"), warnings=tuple(raw.get("warnings") or ()))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LauncherError(f"the remote probe printed no probe JSON ({exc}): {text[:200]!r}",
                            hint="skip the probe with --no-probe and pass --gpus as you need"
                            ) from None


def _version(text: str) -> tuple[int, int]:
    major, _, minor = str(text).partition(".")
    return int(major), int(minor)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _mig_enabled(nvml: Any, handle: Any) -> bool | None:
    try:
        current, _pending = nvml.nvmlDeviceGetMigMode(handle)
    except nvml.NVMLError_NotSupported:
        return None
    return bool(current == nvml.NVML_DEVICE_MIG_ENABLE)


def _gpu(nvml: Any, index: int) -> GpuInfo:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
    return GpuInfo(
        index=index,
        uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
        name=_text(nvml.nvmlDeviceGetName(handle)),
        memory_total=int(nvml.nvmlDeviceGetMemoryInfo(handle).total),
        compute_capability=(int(major), int(minor)),
        mig_enabled=_mig_enabled(nvml, handle),
    )


def probe_host(load: Callable[[], Any] = load_nvml) -> Probe:
    """Driver, its CUDA version and every GPU; a GPU NVML cannot read is skipped with a warning."""
    try:
        nvml = load()
    except NvmlUnavailable as exc:
        return Probe(None, None, (), reason=str(exc))
    try:
        driver = _text(nvml.nvmlSystemGetDriverVersion())
        try:
            raw = int(nvml.nvmlSystemGetCudaDriverVersion())
            cuda: tuple[int, int] | None = (raw // 1000, raw % 1000 // 10)
        except nvml.NVMLError:
            cuda = None
        gpus: list[GpuInfo] = []
        warnings: list[str] = []
        for index in range(int(nvml.nvmlDeviceGetCount())):
            try:
                gpus.append(_gpu(nvml, index))
            except nvml.NVMLError as exc:
                warnings.append(f"GPU {index} skipped: NVML: {exc}")
        return Probe(driver, cuda, tuple(gpus), warnings=tuple(warnings))
    except nvml.NVMLError as exc:
        return Probe(None, None, (), reason=f"NVML failed: {exc}")
    finally:
        try:
            nvml.nvmlShutdown()
        except nvml.NVMLError:
            pass
