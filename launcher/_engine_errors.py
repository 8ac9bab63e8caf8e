"""The engine's typed failures, and the daemon's error strings mapped onto them (pure: no SDK).

:func:`launcher._engine.engine_error` turns an SDK exception into one of these; the mapping from
the daemon's text to a class and a ``hint:`` lives here, so it reads (and tests) without docker.
Each error keeps the daemon's own text in ``detail``: callers match on the class and quote
``detail``, never cut the message apart.
"""

from __future__ import annotations

from launcher._errors import LauncherError

__all__ = [
    "ENGINE_HINT",
    "TOOLKIT_HINT",
    "BuildFailed",
    "ContainerConflict",
    "DriverTooOld",
    "EngineError",
    "EngineUnavailable",
    "GpuRuntimeMissing",
    "MemlockRefused",
    "NotFound",
    "PortInUse",
    "RegistryRefused",
    "RegistryUnreachable",
    "classify",
    "daemon_error",
]

ENGINE_HINT = "start it (scripts/setup --engine, or systemctl start docker) or set DOCKER_HOST"
TOOLKIT_HINT = ("install the NVIDIA Container Toolkit, run 'nvidia-ctk runtime configure "
                "--runtime=docker' and restart dockerd (systemctl restart docker)")


class EngineError(LauncherError):
    """A failure the engine reported; ``detail`` is the daemon's own text ("" when none)."""

    def __init__(self, message: str, hint: str | None = None, detail: str = "") -> None:
        super().__init__(message, hint)
        self.detail = detail


class EngineUnavailable(EngineError):
    """No daemon answers."""


class NotFound(EngineError):
    """An image, container or volume that does not exist."""


class ContainerConflict(EngineError):
    """A container name already in use."""


class PortInUse(EngineError):
    """A host port someone else holds."""


class GpuRuntimeMissing(EngineError):
    """GPUs were requested but the engine cannot hand them to containers."""


class DriverTooOld(EngineError):
    """The NVIDIA Container Toolkit refused an image whose ``NVIDIA_REQUIRE_CUDA`` the driver
    does not meet (``unsatisfied condition: cuda>=13.0``)."""

    @property
    def requirement(self) -> str:
        """The condition the driver does not meet, as the toolkit words it."""
        return self.detail.rpartition("unsatisfied condition: ")[2]


class MemlockRefused(EngineError):
    """The runtime could not raise RLIMIT_MEMLOCK (rlimit type 8) to what the container asks:
    the engine itself runs under a lower hard limit without CAP_SYS_RESOURCE (rootless, or
    inside a container)."""


class RegistryUnreachable(EngineError):
    """A registry the engine cannot reach (nothing listens, no such host, TLS mismatch)."""


class RegistryRefused(EngineError):
    """A registry that answers but will not take the push (no or wrong credentials, no right)."""


class BuildFailed(EngineError):
    """A Dockerfile step failed; ``log`` holds the tail of the build output."""

    def __init__(self, message: str, hint: str | None = None, log: str = "",
                 detail: str = "") -> None:
        super().__init__(message, hint, detail=detail)
        self.log = log


_DRIVER_HINT = ("upgrade the driver, or pin an older CUDA with --cuda X.Y "
                "(launcher probe shows what the driver runs)")
_REGISTRY_HINT = ("check that the registry runs and the engine can reach it; a registry that "
                  "speaks plain http outside 127.0.0.0/8 must be in the engine's "
                  "insecure-registries (daemon.json)")
_LOGIN_HINT = ("log in as the Docker CLI does (docker login REGISTRY): launcher push reads the "
               "same config.json ($DOCKER_CONFIG or ~/.docker) and its credential helpers")
_MEMLOCK_HINT = ("pass a limit it allows, --ulimit memlock=N (bytes), or run dockerd with "
                 "LimitMEMLOCK=infinity (systemd) or ulimit -l unlimited")

# (substrings of the daemon's message, all of which must occur; error class; hint). The first
# match wins.
_RULES: tuple[tuple[tuple[str, ...], type[EngineError], str], ...] = (
    (("could not select device driver",), GpuRuntimeMissing,
     "install the NVIDIA Container Toolkit and restart the engine, or run without --gpus"),
    (("unknown or invalid runtime name: nvidia",), GpuRuntimeMissing,
     ("install the NVIDIA Container Toolkit (nvidia-ctk runtime configure) and restart the "
      "engine, or run without --gpus")),
    (("unsatisfied condition: cuda",), DriverTooOld, _DRIVER_HINT),
    (("rlimit type 8", "operation not permitted"), MemlockRefused, _MEMLOCK_HINT),
    (("port is already allocated",), PortInUse,
     "publish another host port (-p 127.0.0.1:PORT:8000), or stop what holds it (docker ps)"),
    (("address already in use",), PortInUse,
     "publish another host port (-p 127.0.0.1:PORT:8000), or stop what holds it"),
    (("is already in use by container",), ContainerConflict,
     "remove the old container (launcher down) or choose another --name"),
    (("no such image",), NotFound, "build it first: launcher build"),
    (("pull access denied",), NotFound,
     "the image is not local and cannot be pulled; build it or pass --base-image"),
    (("no such container",), NotFound, "list containers with: docker ps -a"),
    (("no such volume",), NotFound, "list volumes with: docker volume ls"),
    # A push: the registry did not answer (the daemon names the registry API URL, /v2/) or
    # answered with a distribution error code ("CODE: message").
    (("/v2/", "connection refused"), RegistryUnreachable, _REGISTRY_HINT),
    (("/v2/", "no such host"), RegistryUnreachable, _REGISTRY_HINT),
    (("/v2/", "i/o timeout"), RegistryUnreachable, _REGISTRY_HINT),
    (("server gave http response to https client",), RegistryUnreachable, _REGISTRY_HINT),
    (("no basic auth credentials",), RegistryRefused, _LOGIN_HINT),
    (("unauthorized:",), RegistryRefused, _LOGIN_HINT),
    (("denied:",), RegistryRefused, _LOGIN_HINT),
)


def classify(text: str, doing: str) -> EngineError | None:
    """The typed error for the daemon's ``text`` while ``doing`` something; None when no rule
    knows the text."""
    low = text.lower()
    for needles, cls, hint in _RULES:
        if all(needle in low for needle in needles):
            return cls(f"{doing}: {text}", hint, detail=text)
    return None


def daemon_error(text: str, doing: str) -> EngineError:
    """The daemon's ``text`` while ``doing`` something as its typed error (:func:`classify`), or
    a plain :class:`EngineError` that points at the engine's log when no rule knows it."""
    return classify(text, doing) or EngineError(
        f"{doing}: {text}", "see the engine's log (journalctl -u docker)", detail=text)
