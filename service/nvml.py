"""The one module that imports nvidia-ml-py (``pynvml``).

Everything that reads GPUs (the launcher's probe, the service's metrics collector) takes an
``nvml`` object with pynvml's API: the real module from :func:`load_nvml`, or a fake in the tests
that raises pynvml's own error classes. Consumers catch ``nvml.NVMLError`` and its subclasses
through that object, so no other module imports pynvml.
"""

from __future__ import annotations

from types import ModuleType
from typing import cast

__all__ = ["NvmlUnavailable", "load_nvml"]


class NvmlUnavailable(Exception):
    """NVML cannot be used here; the message says why in one line."""


def load_nvml() -> ModuleType:
    """Import and initialise NVML, or raise :class:`NvmlUnavailable` with the reason."""
    try:
        import pynvml
    except ImportError as exc:  # the package itself is missing
        raise NvmlUnavailable(f"nvidia-ml-py is not installed ({exc})") from None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError_LibraryNotFound:
        raise NvmlUnavailable(
            "NVML library (libnvidia-ml.so.1) not found: no NVIDIA driver on this host"
        ) from None
    except pynvml.NVMLError as exc:
        raise NvmlUnavailable(f"NVML failed to initialise: {exc}") from None
    return cast(ModuleType, pynvml)
