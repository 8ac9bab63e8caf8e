"""Which torch device to run on, decided from facts torch reports (pure; table-tested)."""

from __future__ import annotations

from dataclasses import dataclass

from service._errors import ServiceError

__all__ = ["DeviceChoice", "DeviceError", "choose_device"]


class DeviceError(ServiceError):
    """The requested device cannot be used."""


@dataclass(frozen=True)
class DeviceChoice:
    device: str  # "cpu" or "cuda:N"
    fallback_reason: str | None = None  # why auto chose the CPU (logged once at start)


def choose_device(requested: str, cuda_built: bool, cuda_available: bool,
                  device_count: int) -> DeviceChoice:
    """``requested`` is auto|cpu|cuda|cuda:N (already parsed); the rest is what torch says."""
    if requested == "cpu":
        return DeviceChoice("cpu")
    if not cuda_built:
        why = "this torch build has no CUDA support (a CPU wheel)"
    elif not cuda_available or device_count == 0:
        why = "no CUDA device is visible (no GPU, no driver, or the container got no --gpus)"
    else:
        why = ""
    if requested == "auto":
        return DeviceChoice("cuda:0") if not why else DeviceChoice("cpu", why)
    if why:
        raise DeviceError(f"DEVICE={requested} but CUDA cannot be used: {why}",
                          "set DEVICE=auto to fall back to the CPU, or give the container a GPU")
    index = int(requested.partition(":")[2] or 0)
    if index >= device_count:
        raise DeviceError(
            f"DEVICE={requested} but only {device_count} CUDA device(s) are visible "
            f"(cuda:0..cuda:{device_count - 1})",
            "pick an index below the device count, or set DEVICE=cuda for the first GPU")
    return DeviceChoice(f"cuda:{index}")
