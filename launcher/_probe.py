"""What the host's GPUs are, read through NVML (the loader from :mod:`service.nvml`), or read
back from another host's ``launcher probe --json`` (``--probe-file``).

No NVML (no driver, no library) is a fact, not an error: an empty GPU list and the reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launcher._errors import LauncherError, UsageError
from service.nvml import NvmlUnavailable, load_nvml

__all__ = ["GpuInfo", "Probe", "parse_probe_json", "probe_from_json", "probe_host",
           "read_probe_file"]

# NVML's brand enum as the NVIDIA Container Toolkit names it in NVIDIA_REQUIRE_* (brand=tesla):
# NVIDIA/nvidia-container-toolkit internal/requirements/image.go, brandTypeToRequirementString.
_BRANDS = {
    "NVML_BRAND_QUADRO": "quadro", "NVML_BRAND_TESLA": "tesla", "NVML_BRAND_NVS": "nvs",
    "NVML_BRAND_GRID": "grid", "NVML_BRAND_GEFORCE": "geforce", "NVML_BRAND_TITAN": "titan",
    "NVML_BRAND_NVIDIA_VAPPS": "nvidiavapps", "NVML_BRAND_NVIDIA_VPC": "nvidiavpc",
    "NVML_BRAND_NVIDIA_VCS": "nvidiavcs", "NVML_BRAND_NVIDIA_VWS": "nvidiavws",
    "NVML_BRAND_NVIDIA_CLOUD_GAMING": "nvidiacloudgaming", "NVML_BRAND_QUADRO_RTX": "quadrortx",
    "NVML_BRAND_NVIDIA_RTX": "nvidiartx", "NVML_BRAND_NVIDIA": "nvidia",
    "NVML_BRAND_GEFORCE_RTX": "geforcertx", "NVML_BRAND_TITAN_RTX": "titanrtx",
}


@dataclass(frozen=True)
class GpuInfo:
    index: int
    uuid: str
    name: str
    memory_total: int  # bytes
    compute_capability: tuple[int, int]
    mig_enabled: bool | None  # None: the GPU has no MIG
    brand: str | None = None  # NVML's brand as the container toolkit names it ("tesla")

    def to_json(self) -> dict[str, Any]:
        major, minor = self.compute_capability
        return {"index": self.index, "uuid": self.uuid, "name": self.name,
                "memory_total_bytes": self.memory_total,
                "compute_capability": f"{major}.{minor}", "mig_enabled": self.mig_enabled,
                "brand": self.brand}


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


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _mig_enabled(nvml: Any, handle: Any) -> bool | None:
    try:
        current, _pending = nvml.nvmlDeviceGetMigMode(handle)
    except nvml.NVMLError_NotSupported:
        return None
    return bool(current == nvml.NVML_DEVICE_MIG_ENABLE)


def _brand(nvml: Any, handle: Any) -> str | None:
    try:
        value = int(nvml.nvmlDeviceGetBrand(handle))
    except nvml.NVMLError:
        return None
    return next((b for name, b in _BRANDS.items() if getattr(nvml, name, None) == value), None)


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
        brand=_brand(nvml, handle),
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


_PROBE_HINT = "pass the output of 'launcher probe --json' run on the target host"


class _Bad(ValueError):
    pass


def _field(obj: dict[str, Any], key: str, where: str, kinds: tuple[type, ...],
           expected: str, required: bool = True) -> Any:
    if key not in obj:
        if required:
            raise _Bad(f'{where}"{key}" is missing')
        return None
    value = obj[key]
    if value is None and not required:
        return None
    if not isinstance(value, kinds) or isinstance(value, bool) and bool not in kinds:
        raise _Bad(f'{where}"{key}" is {json.dumps(value)}, expected {expected}')
    return value


def _capability(value: Any, where: str) -> tuple[int, int]:
    major, dot, minor = str(value).partition(".")
    if not (isinstance(value, str) and dot and major.isdigit() and minor.isdigit()):
        raise _Bad(f'{where} is {json.dumps(value)}, expected MAJOR.MINOR such as "9.0"')
    return int(major), int(minor)


def probe_from_json(data: Any) -> Probe:
    """A :class:`Probe` from ``launcher probe --json`` output; ValueError naming the bad key."""
    try:
        if not isinstance(data, dict):
            raise _Bad(f"the top level is {type(data).__name__}, expected an object")
        driver = _field(data, "driver_version", "", (str,), "a driver version such as "
                        '"580.65.06"', required=False)
        cuda_text = _field(data, "cuda_driver_version", "", (str,), 'MAJOR.MINOR such as "13.0"',
                           required=False)
        cuda = _capability(cuda_text, '"cuda_driver_version"') if cuda_text else None
        gpus_raw = _field(data, "gpus", "", (list,), "a list")
        gpus = []
        for i, raw in enumerate(gpus_raw):
            where = f'"gpus"[{i}].'
            if not isinstance(raw, dict):
                raise _Bad(f'"gpus"[{i}] is {json.dumps(raw)}, expected an object')
            gpus.append(GpuInfo(
                index=_field(raw, "index", where, (int,), "an integer"),
                uuid=_field(raw, "uuid", where, (str,), "a string"),
                name=_field(raw, "name", where, (str,), "a string"),
                memory_total=_field(raw, "memory_total_bytes", where, (int,), "an integer",
                                    required=False) or 0,
                compute_capability=_capability(
                    _field(raw, "compute_capability", where, (str,), 'MAJOR.MINOR such as "9.0"'),
                    f'{where}"compute_capability"'),
                mig_enabled=_field(raw, "mig_enabled", where, (bool,), "true, false or null",
                                   required=False),
                brand=_field(raw, "brand", where, (str,), "a string", required=False),
            ))
        if gpus and driver is None:
            raise _Bad('"driver_version" is missing, and the host has GPUs')
        reason = _field(data, "reason", "", (str,), "a string", required=False)
        warnings = _field(data, "warnings", "", (list,), "a list", required=False) or []
    except _Bad as exc:
        raise ValueError(str(exc)) from None
    return Probe(driver, cuda, tuple(gpus), reason=reason,
                 warnings=tuple(str(w) for w in warnings))


def read_probe_file(path: Path) -> Probe:
    """``--probe-file FILE``: another host's probe; a bad file → :class:`UsageError` (exit 2)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f'invalid argument "{path}" for "--probe-file" flag: {exc.strerror}',
                         hint=_PROBE_HINT) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f'invalid argument "{path}" for "--probe-file" flag: not JSON: {exc}',
                         hint=_PROBE_HINT) from None
    try:
        return probe_from_json(data)
    except ValueError as exc:
        raise UsageError(f'invalid argument "{path}" for "--probe-file" flag: {exc}',
                         hint=_PROBE_HINT) from None


def parse_probe_json(text: str) -> Probe:
    """:meth:`Probe.to_json` as ``launcher probe --json`` prints it (from a container on a
    remote engine) → :class:`Probe`. The container's log mixes in its stderr lines: the JSON is
    the object from the line "{"."""
    try:
        start = 0 if text.startswith("{") else text.index("\n{\n") + 1
        raw, _ = json.JSONDecoder().raw_decode(text, start)
        return probe_from_json(raw)
    except ValueError as exc:
        raise LauncherError(f"the remote probe printed no probe JSON ({exc}): {text[:200]!r}",
                            hint="skip the probe with --no-probe and pass --gpus as you need"
                            ) from None
