"""The Docker engine behind one narrow interface: the only module that imports the SDK.

Everything the launcher asks of the daemon goes through :class:`Engine`; the daemon's error
strings become typed :class:`~launcher._errors.LauncherError` s with a ``hint:`` in one place
(:func:`engine_error`), so commands decide policy and never see SDK exceptions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

import docker
import docker.errors
import requests

from launcher._errors import LauncherError

__all__ = [
    "BuildFailed",
    "ContainerConflict",
    "Engine",
    "EngineInfo",
    "EngineUnavailable",
    "GpuRuntimeMissing",
    "NotFound",
    "PortInUse",
    "engine_error",
]


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


def engine_error(exc: Exception, doing: str) -> LauncherError:
    """The typed error for an SDK exception raised while ``doing`` something."""
    if isinstance(exc, (requests.ConnectionError, ConnectionError)) or (
        isinstance(exc, docker.errors.DockerException)
        and not isinstance(exc, docker.errors.APIError)
        and "connect" in str(exc).lower()
    ):
        return EngineUnavailable(
            f"cannot reach the Docker engine while {doing}: {exc}",
            "start it (scripts/setup --engine, or systemctl start docker) or set DOCKER_HOST",
        )
    text = str(exc)
    if isinstance(exc, docker.errors.APIError) and exc.explanation:
        text = str(exc.explanation)
    low = text.lower()
    for needle, cls, hint in _RULES:
        if needle in low:
            return cls(f"{doing}: {text}", hint)
    if isinstance(exc, docker.errors.NotFound):
        return NotFound(f"{doing}: {text}", "check the name with docker ps -a / docker images")
    return LauncherError(f"{doing}: {text}", "see the engine's log (journalctl -u docker)")


@dataclass(frozen=True)
class EngineInfo:
    """What `docker info` says matters for GPUs."""

    server_version: str
    api_version: str
    runtimes: tuple[str, ...]
    default_runtime: str
    cdi_spec_dirs: tuple[str, ...]


class Engine:
    """The daemon, through the SDK's low-level API client (raw Engine API bodies in and out)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._api = client.api

    @classmethod
    def connect(cls, timeout: int = 300) -> Engine:
        try:
            client = docker.from_env(timeout=timeout)
            client.ping()
        except Exception as exc:  # noqa: BLE001 - every failure here means "no engine"
            raise EngineUnavailable(
                f"cannot reach the Docker engine: {exc}",
                "start it (scripts/setup --engine, or systemctl start docker) or set DOCKER_HOST",
            ) from None
        return cls(client)

    def close(self) -> None:
        self._client.close()

    # --- info -------------------------------------------------------------------------------
    def info(self) -> EngineInfo:
        try:
            raw = self._api.info()
            version = self._api.version()
        except Exception as exc:  # noqa: BLE001
            raise engine_error(exc, "reading docker info") from None
        return EngineInfo(
            server_version=str(raw.get("ServerVersion", "")),
            api_version=str(version.get("ApiVersion", "")),
            runtimes=tuple(sorted((raw.get("Runtimes") or {}).keys())),
            default_runtime=str(raw.get("DefaultRuntime", "")),
            cdi_spec_dirs=tuple(raw.get("CDISpecDirs") or ()),
        )

    # --- images -----------------------------------------------------------------------------
    def image_id(self, ref: str) -> str | None:
        """The image's id, or None when no such image is local."""
        try:
            return str(self._api.inspect_image(ref)["Id"])
        except docker.errors.ImageNotFound:
            return None
        except Exception as exc:  # noqa: BLE001
            raise engine_error(exc, f"inspecting image {ref}") from None

    def image_exists(self, ref: str) -> bool:
        return self.image_id(ref) is not None

    def inspect_image(self, ref: str) -> dict[str, Any]:
        try:
            return dict(self._api.inspect_image(ref))
        except Exception as exc:  # noqa: BLE001
            raise engine_error(exc, f"inspecting image {ref}") from None

    def remove_image(self, ref: str, force: bool = False) -> None:
        try:
            self._api.remove_image(ref, force=force)
        except docker.errors.ImageNotFound:
            pass
        except Exception as exc:  # noqa: BLE001
            raise engine_error(exc, f"removing image {ref}") from None

    def tag_image(self, ref: str, tag: str) -> None:
        repo, _, version = tag.rpartition(":")
        if not repo or "/" in version:
            repo, version = tag, "latest"
        try:
            self._api.tag(ref, repo, version)
        except Exception as exc:  # noqa: BLE001
            raise engine_error(exc, f"tagging {ref} as {tag}") from None

    def build(
        self,
        context: IO[bytes],
        *,
        dockerfile: str,
        tag: str,
        build_args: Mapping[str, str],
        labels: Mapping[str, str] | None = None,
        no_cache: bool = False,
        on_output: Callable[[str], None] = lambda _: None,
    ) -> str:
        """Build from an uncompressed context tar (legacy builder); stream each output chunk to
        ``on_output``; return the image id."""
        tail: list[str] = []
        image_id = ""
        try:
            stream: Iterator[dict[str, Any]] = self._api.build(
                fileobj=context, custom_context=True, dockerfile=dockerfile, tag=tag,
                buildargs=dict(build_args), labels=dict(labels or {}), nocache=no_cache,
                rm=True, forcerm=True, decode=True,
            )
            for chunk in stream:
                if "error" in chunk:
                    detail = chunk.get("errorDetail") or {}
                    message = str(detail.get("message") or chunk["error"]).strip()
                    raise BuildFailed(
                        f"building {tag} from {dockerfile} failed: {message}",
                        "rerun with --verbose for the whole build output",
                        "".join(tail[-40:]),
                    )
                text = chunk.get("stream")
                if isinstance(text, str):
                    tail.append(text)
                    del tail[:-200]
                    on_output(text)
                aux = chunk.get("aux")
                if isinstance(aux, dict) and "ID" in aux:
                    image_id = str(aux["ID"])
        except LauncherError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise engine_error(exc, f"building {tag}") from None
        return image_id or (self.image_id(tag) or "")

    def run_once(self, image: str, command: Sequence[str], timeout: float = 60) -> str:
        """Run ``command`` in a throwaway container of ``image``; its stdout, or an error with
        the output when it exits non-zero. For short probes (which Python an image has)."""
        container = self.create_container(
            {"Image": image, "Entrypoint": [], "Cmd": list(command), "User": "0",
             "NetworkDisabled": True, "HostConfig": {"NetworkMode": "none"}},
        )
        try:
            self.start(container)
            status = self.wait(container, timeout)
            out = self.logs(container)
        finally:
            self.remove_container(container, force=True)
        if status != 0:
            raise LauncherError(
                f"probing image {image} with {' '.join(command)} exited {status}: {out.strip()}",
                "check that the image runs here (docker run --rm IMAGE ...)",
            )
        return out

    # --- containers -------------------------------------------------------------------------
    def create_container(self, body: Mapping[str, Any], name: str | None = None) -> str:
        """POST /containers/create with the raw Engine API body; the new container's id."""
        try:
            created = self._api.create_container_from_config(dict(body), name)
        except Exception as exc:  # noqa: BLE001
            raise engine_error(exc, f"creating container {name or ''}".rstrip()) from None
        return str(created["Id"])

    def start(self, container: str) -> None:
        try:
            self._api.start(container)
        except Exception as exc:  # noqa: BLE001
            raise engine_error(exc, f"starting container {container[:12]}") from None

    def inspect_container(self, container: str) -> dict[str, Any]:
        try:
            return dict(self._api.inspect_container(container))
        except Exception as exc:  # noqa: BLE001
            raise engine_error(exc, f"inspecting container {container[:12]}") from None

    def containers(self, labels: Mapping[str, str], all: bool = True) -> list[dict[str, Any]]:
        """Containers carrying every label in ``labels`` (raw /containers/json rows)."""
        filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
        try:
            return list(self._api.containers(all=all, filters=filters))
        except Exception as exc:  # noqa: BLE001
            raise engine_error(exc, "listing containers") from None

    def stop(self, container: str, timeout: int = 10) -> None:
        try:
            self._api.stop(container, timeout=timeout)
        except docker.errors.NotFound:
            pass
        except Exception as exc:  # noqa: BLE001
            raise engine_error(exc, f"stopping container {container[:12]}") from None

    def wait(self, container: str, timeout: float) -> int:
        try:
            result = self._api.wait(container, timeout=timeout)
        except requests.exceptions.ReadTimeout:
            raise LauncherError(
                f"container {container[:12]} still running after {timeout:g}s",
                "see its log: docker logs " + container[:12],
            ) from None
        except Exception as exc:  # noqa: BLE001
            raise engine_error(exc, f"waiting for container {container[:12]}") from None
        return int(result.get("StatusCode", -1))

    def remove_container(self, container: str, force: bool = False) -> None:
        try:
            self._api.remove_container(container, force=force, v=False)
        except docker.errors.NotFound:
            pass
        except Exception as exc:  # noqa: BLE001
            raise engine_error(exc, f"removing container {container[:12]}") from None

    def logs(self, container: str, tail: int | None = None) -> str:
        try:
            raw = self._api.logs(container, stdout=True, stderr=True,
                                 tail="all" if tail is None else tail)
        except Exception as exc:  # noqa: BLE001
            raise engine_error(exc, f"reading logs of {container[:12]}") from None
        return bytes(raw).decode(errors="replace")

    def follow_logs(self, container: str) -> Iterator[str]:
        try:
            for chunk in self._api.logs(container, stream=True, follow=True):
                yield bytes(chunk).decode(errors="replace")
        except Exception as exc:  # noqa: BLE001
            raise engine_error(exc, f"following logs of {container[:12]}") from None

    def health(self, container: str) -> str | None:
        """``starting`` / ``healthy`` / ``unhealthy``, or None without a HEALTHCHECK."""
        state = self.inspect_container(container).get("State") or {}
        health = state.get("Health")
        return None if not health else str(health.get("Status"))

    # --- volumes ----------------------------------------------------------------------------
    def create_volume(self, name: str, labels: Mapping[str, str] | None = None) -> None:
        try:
            self._api.create_volume(name, labels=dict(labels or {}))
        except Exception as exc:  # noqa: BLE001
            raise engine_error(exc, f"creating volume {name}") from None

    def volume_exists(self, name: str) -> bool:
        try:
            self._api.inspect_volume(name)
        except docker.errors.NotFound:
            return False
        except Exception as exc:  # noqa: BLE001
            raise engine_error(exc, f"inspecting volume {name}") from None
        return True

    def remove_volume(self, name: str, force: bool = False) -> None:
        try:
            self._api.remove_volume(name, force=force)
        except docker.errors.NotFound:
            pass
        except Exception as exc:  # noqa: BLE001
            raise engine_error(exc, f"removing volume {name}") from None


    def volumes(self, labels: Mapping[str, str]) -> list[str]:
        """Names of the volumes carrying every label in ``labels``."""
        filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
        try:
            found = self._api.volumes(filters=filters).get("Volumes") or []
        except Exception as exc:  # noqa: BLE001
            raise engine_error(exc, "listing volumes") from None
        return sorted(str(v["Name"]) for v in found)

    # --- lifecycle (launcher up/down/status/logs) -------------------------------------------
    def put_archive(self, container: str, path: str, data: bytes) -> None:
        """Unpack the tar ``data`` into ``path`` of a (created) container: works on a remote
        engine, where a bind mount of a local path cannot."""
        try:
            self._api.put_archive(container, path, data)
        except Exception as exc:  # noqa: BLE001
            raise engine_error(exc, f"copying files into {container[:12]}") from None

    def stream_logs(self, container: str, tail: int | None = None,
                    follow: bool = False) -> Iterator[str]:
        """The log as chunks of text: the last ``tail`` lines (None: all), then, with
        ``follow``, what the container writes until it stops."""
        try:
            for chunk in self._api.logs(container, stream=True, follow=follow,
                                        tail="all" if tail is None else tail):
                yield bytes(chunk).decode(errors="replace")
        except Exception as exc:  # noqa: BLE001
            raise engine_error(exc, f"reading logs of {container[:12]}") from None
