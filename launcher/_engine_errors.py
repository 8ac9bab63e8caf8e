"""The engine's typed failures, and the daemon's error strings mapped onto them (pure: no SDK).

:func:`launcher._engine.engine_error` turns an SDK exception into one of these; the mapping from
the daemon's text to a class and a ``hint:`` lives here, so it reads (and tests) without docker.
"""

from __future__ import annotations

from launcher._errors import LauncherError

__all__ = [
    "ENGINE_HINT",
    "BuildFailed",
    "ContainerConflict",
    "EngineUnavailable",
    "GpuRuntimeMissing",
    "NotFound",
    "PortInUse",
    "classify",
]

ENGINE_HINT = "start it (scripts/setup --engine, or systemctl start docker) or set DOCKER_HOST"


class EngineUnavailable(LauncherError):
    """No daemon answers."""


class NotFound(LauncherError):
    """An image, container or volume that does not exist."""


class ContainerConflict(LauncherError):
    """A container name already in use."""


class PortInUse(LauncherError):
    """A host port someone else holds."""


class GpuRuntimeMissing(LauncherError):
    """GPUs were requested but the engine cannot hand them to containers."""


class BuildFailed(LauncherError):
    """A Dockerfile step failed; ``log`` holds the tail of the build output."""

    def __init__(self, message: str, hint: str | None = None, log: str = "") -> None:
        super().__init__(message, hint)
        self.log = log


# (substring of the daemon's message, error class, hint); the first match wins.
_RULES: tuple[tuple[str, type[LauncherError], str], ...] = (
    ("could not select device driver", GpuRuntimeMissing,
     "install the NVIDIA Container Toolkit and restart the engine, or run with --gpus none"),
    ("unknown or invalid runtime name: nvidia", GpuRuntimeMissing,
     "install the NVIDIA Container Toolkit (nvidia-ctk runtime configure), or drop --runtime"),
    ("port is already allocated", PortInUse,
     "choose another --port, or stop what holds it (docker ps)"),
    ("address already in use", PortInUse,
     "choose another --port, or stop what holds it"),
    ("is already in use by container", ContainerConflict,
     "remove the old container (launcher down) or choose another --name"),
    ("no such image", NotFound, "build it first: launcher build"),
    ("pull access denied", NotFound,
     "the image is not local and cannot be pulled; build it or pass --base-image"),
    ("no such container", NotFound, "list containers with: docker ps -a"),
    ("no such volume", NotFound, "list volumes with: docker volume ls"),
)


def classify(text: str, doing: str) -> LauncherError | None:
    """The typed error for the daemon's ``text`` while ``doing`` something; None when no rule
    knows the text."""
    low = text.lower()
    for needle, cls, hint in _RULES:
        if needle in low:
            return cls(f"{doing}: {text}", hint)
    return None
