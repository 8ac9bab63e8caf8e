"""The Docker engine behind one narrow interface: the only module that imports the SDK.

Everything the launcher asks of the daemon goes through :class:`EngineAPI` (the real one is
:class:`Engine`; test fakes implement the same Protocol); the daemon's error strings become
typed :class:`~launcher._engine_errors.EngineError` s with a ``hint:`` in one place
(:func:`engine_error`; the text-to-class rules are :mod:`launcher._engine_errors`), so
commands decide policy and never see SDK exceptions.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any, Protocol
from urllib.parse import urlsplit

try:
    import docker
    import docker.errors
    import requests
except ModuleNotFoundError as exc:  # a pip install --no-deps: only what needs an engine fails
    _SDK_MISSING: ModuleNotFoundError | None = exc
else:
    _SDK_MISSING = None

from launcher._engine_errors import (
    ENGINE_HINT,
    BuildFailed,
    EngineUnavailable,
    NotFound,
    classify,
    daemon_error,
)
from launcher._errors import LauncherError

__all__ = [
    "ContainerExit",
    "Engine",
    "EngineAPI",
    "EngineInfo",
    "connect",
    "engine_error",
    "is_remote_engine",
]

# The client's version while it only pings: /_ping is unversioned, so nothing is asked of it.
_PING_ONLY = "1.24"


def engine_error(exc: Exception, doing: str) -> LauncherError:
    """The typed error for an SDK exception raised while ``doing`` something."""
    if isinstance(exc, (requests.ConnectionError, ConnectionError)) or (
        isinstance(exc, docker.errors.DockerException)
        and not isinstance(exc, docker.errors.APIError)
        and "connect" in str(exc).lower()
    ):
        return EngineUnavailable(f"cannot reach the Docker engine while {doing}: {exc}",
                                 ENGINE_HINT, detail=str(exc))
    text = str(exc)
    if isinstance(exc, docker.errors.APIError) and exc.explanation:
        text = str(exc.explanation)
    if isinstance(exc, docker.errors.NotFound):
        return classify(text, doing) or NotFound(
            f"{doing}: {text}", "check the name with docker ps -a / docker images", detail=text)
    return daemon_error(text, doing)


@contextmanager
def _calling(doing: str, missing: type[Exception] | None = None) -> Iterator[None]:
    """Around one SDK call: its exceptions become :func:`engine_error` s; ``missing`` (the
    SDK's not-found error, where absence is an answer) is swallowed, and the code after the
    ``with`` block says what absence means."""
    try:
        yield
    except LauncherError:
        raise
    except Exception as exc:  # noqa: BLE001 - every SDK failure is mapped
        if missing is not None and isinstance(exc, missing):
            return
        raise engine_error(exc, doing) from None


def _label_filters(labels: Mapping[str, str]) -> dict[str, list[str]]:
    return {"label": [f"{k}={v}" for k, v in labels.items()]}


@dataclass(frozen=True)
class EngineInfo:
    """What `docker info` says matters for GPUs (and ``engine_id``, which names this engine)."""

    server_version: str
    api_version: str
    runtimes: tuple[str, ...]
    default_runtime: str
    cdi_spec_dirs: tuple[str, ...]
    engine_id: str = ""
    cgroup_driver: str = ""  # "systemd" or "cgroupfs"


@dataclass(frozen=True)
class ContainerExit:
    """How a container that ran to its end ended: exit status and its output (stdout+stderr)."""

    status: int
    output: str


class EngineAPI(Protocol):
    """What the launcher's core asks of an engine: :class:`Engine` is the real one, and the
    tests' fakes implement the same methods, so the type checker holds them to it."""

    def close(self) -> None: ...

    def info(self) -> EngineInfo: ...

    def image_id(self, ref: str) -> str | None: ...

    def inspect_image(self, ref: str) -> dict[str, Any]: ...

    def tag_image(self, ref: str, repository: str, tag: str) -> None: ...

    def push(self, repository: str, tag: str) -> Iterator[dict[str, Any]]: ...

    def build(self, context: IO[bytes], *, dockerfile: str, tag: str,
              build_args: Mapping[str, str], labels: Mapping[str, str] | None = None,
              no_cache: bool = False, on_output: Callable[[str], None] = ...) -> str: ...

    def run_once(self, image: str, command: Sequence[str], timeout: float = 60) -> str: ...

    def run_container(self, body: Mapping[str, Any], timeout: float,
                      archives: Sequence[tuple[str, bytes]] = ()) -> ContainerExit: ...

    def create_container(self, body: Mapping[str, Any], name: str | None = None) -> str: ...

    def start(self, container: str) -> None: ...

    def find_container(self, name: str) -> dict[str, Any] | None: ...

    def inspect_container(self, container: str) -> dict[str, Any]: ...

    def containers(self, labels: Mapping[str, str], all: bool = True) -> list[dict[str, Any]]: ...

    def stop(self, container: str, timeout: int = 10) -> None: ...

    def wait(self, container: str, timeout: float) -> int: ...

    def remove_container(self, container: str, force: bool = False) -> None: ...

    def logs(self, container: str, tail: int | None = None) -> str: ...

    def stream_logs(self, container: str, tail: int | None = None,
                    follow: bool = False) -> Iterator[str]: ...

    def watch_output(self, container: str, on_output: Callable[[], None]) -> Callable[[], None]:
        ...

    def put_archive(self, container: str, path: str, data: bytes) -> None: ...

    def create_volume(self, name: str, labels: Mapping[str, str] | None = None) -> None: ...

    def volume_exists(self, name: str) -> bool: ...

    def remove_volume(self, name: str, force: bool = False) -> None: ...

    def volumes(self, labels: Mapping[str, str]) -> list[str]: ...


def is_remote_engine(docker_host: str | None) -> bool:
    """True when ``DOCKER_HOST`` names another machine, whose GPUs this host's NVML cannot see."""
    if not docker_host:
        return False
    parts = urlsplit(docker_host)
    if parts.scheme in ("unix", "npipe", "fd"):
        return False
    return parts.hostname not in ("localhost", "127.0.0.1", "::1")


def connect(environ: Mapping[str, str] | None = None, timeout: int = 300) -> Engine:
    """The engine ``DOCKER_HOST`` (of ``environ``, default this process's) names; when it does
    not answer, the hint says which one was asked."""
    environ = os.environ if environ is None else environ
    if _SDK_MISSING is not None:  # launcher's main names the install that brings it
        raise _SDK_MISSING
    try:  # asks the engine its API version: the round trip that tells whether one answers
        client = docker.from_env(timeout=timeout, environment=dict(environ),
                                 version=_negotiate(environ, timeout))
    except Exception as exc:  # noqa: BLE001 - every failure here means "no engine"
        host = environ.get("DOCKER_HOST")
        hint = (f"no engine answers at DOCKER_HOST={host}: start it there, or unset "
                "DOCKER_HOST for the local one") if host else ENGINE_HINT
        raise EngineUnavailable(f"cannot reach the Docker engine: {exc}", hint,
                                detail=str(exc)) from None
    # the client's API version is the one the engine just gave (its newest)
    return Engine(client, api_version=str(client.api.api_version))


def _negotiate(environ: Mapping[str, str], timeout: int) -> str:
    """The engine's API version, as the Docker CLI negotiates it: ``GET /_ping`` (unversioned)
    and its ``API-Version`` header. The SDK's own "auto" asks ``/version`` instead, which makes
    the engine ask containerd and runc theirs (~7 ms more of every command here). An engine
    that does not send the header: "auto"."""
    probe = docker.from_env(version=_PING_ONLY, environment=dict(environ), timeout=timeout)
    try:
        response = probe.api.get(probe.api.base_url + "/_ping")
        response.raise_for_status()
        return str(response.headers.get("API-Version") or "auto")
    finally:
        probe.close()


class Engine:
    """The daemon, through the SDK's low-level API client (raw Engine API bodies in and out)."""

    def __init__(self, client: Any, api_version: str | None = None) -> None:
        self._client = client
        self._api = client.api
        self._api_version = api_version  # the engine's, when already asked (connect)

    def close(self) -> None:
        self._client.close()

    # --- info -------------------------------------------------------------------------------
    def info(self) -> EngineInfo:
        with _calling("reading docker info"):
            raw = self._api.info()
            api_version = self._api_version
            if api_version is None:
                api_version = str(self._api.version().get("ApiVersion", ""))
        return EngineInfo(
            server_version=str(raw.get("ServerVersion", "")),
            api_version=api_version,
            runtimes=tuple(sorted((raw.get("Runtimes") or {}).keys())),
            default_runtime=str(raw.get("DefaultRuntime", "")),
            cdi_spec_dirs=tuple(raw.get("CDISpecDirs") or ()),
            engine_id=str(raw.get("ID") or ""),
            cgroup_driver=str(raw.get("CgroupDriver") or ""),
        )

    # --- images -----------------------------------------------------------------------------
    def image_id(self, ref: str) -> str | None:
        """The image's id, or None when no such image is local."""
        with _calling(f"inspecting image {ref}", missing=docker.errors.ImageNotFound):
            return str(self._api.inspect_image(ref)["Id"])
        return None

    def inspect_image(self, ref: str) -> dict[str, Any]:
        with _calling(f"inspecting image {ref}"):
            return dict(self._api.inspect_image(ref))

    def remove_image(self, ref: str, force: bool = False) -> None:
        with _calling(f"removing image {ref}", missing=docker.errors.ImageNotFound):
            self._api.remove_image(ref, force=force)

    def tag_image(self, ref: str, repository: str, tag: str) -> None:
        """``docker tag REF REPOSITORY:TAG``."""
        with _calling(f"tagging {ref} as {repository}:{tag}"):
            self._api.tag(ref, repository, tag)

    def push(self, repository: str, tag: str) -> Iterator[dict[str, Any]]:
        """``docker push REPOSITORY:TAG``: the engine's progress events, decoded. Credentials
        come from the Docker config as the CLI reads it (the SDK loads ``$DOCKER_CONFIG`` or
        ``~/.docker/config.json``: ``auths``, ``credsStore``, ``credHelpers``). An error event
        (the registry refused or did not answer) becomes its typed error."""
        doing = f"pushing {repository}:{tag}"
        with _calling(doing):
            stream: Iterator[dict[str, Any]] = self._api.push(repository, tag=tag, stream=True,
                                                              decode=True)
            for event in stream:
                if "error" in event:
                    detail = event.get("errorDetail") or {}
                    text = str(detail.get("message") or event["error"]).strip()
                    raise daemon_error(text, doing)
                yield event

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
        with _calling(f"building {tag}"):
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
                        detail=message,
                    )
                text = chunk.get("stream")
                if isinstance(text, str):
                    tail.append(text)
                    del tail[:-200]
                    on_output(text)
                aux = chunk.get("aux")
                if isinstance(aux, dict) and "ID" in aux:
                    image_id = str(aux["ID"])
        return image_id or (self.image_id(tag) or "")

    def run_once(self, image: str, command: Sequence[str], timeout: float = 60) -> str:
        """Run ``command`` in a throwaway container of ``image``; its stdout, or an error with
        the output when it exits non-zero. For short probes (which Python an image has)."""
        done = self.run_container(
            {"Image": image, "Entrypoint": [], "Cmd": list(command), "User": "0",
             "NetworkDisabled": True, "HostConfig": {"NetworkMode": "none"}}, timeout)
        if done.status != 0:
            raise LauncherError(
                f"probing image {image} with {' '.join(command)} exited {done.status}: "
                f"{done.output.strip()}",
                "check that the image runs here (docker run --rm IMAGE ...)",
            )
        return done.output

    # --- containers -------------------------------------------------------------------------
    def create_container(self, body: Mapping[str, Any], name: str | None = None) -> str:
        """POST /containers/create with the raw Engine API body; the new container's id."""
        with _calling(f"creating container {name or ''}".rstrip()):
            created = self._api.create_container_from_config(dict(body), name)
        return str(created["Id"])

    def start(self, container: str) -> None:
        with _calling(f"starting container {container[:12]}"):
            self._api.start(container)

    def run_container(self, body: Mapping[str, Any], timeout: float,
                      archives: Sequence[tuple[str, bytes]] = ()) -> ContainerExit:
        """Create a container from ``body``, unpack each ``(path, tar)`` of ``archives`` into
        it, start it, wait for its end, read its output and remove it (also when any step
        fails: the step's error is raised)."""
        container = self.create_container(body)
        try:
            for path, data in archives:
                self.put_archive(container, path, data)
            self.start(container)
            status = self.wait(container, timeout)
            return ContainerExit(status, self.logs(container))
        finally:
            self.remove_container(container, force=True)

    def find_container(self, name: str) -> dict[str, Any] | None:
        """``docker inspect NAME``, or None when there is no such container."""
        with _calling(f"inspecting container {name}", missing=docker.errors.NotFound):
            return dict(self._api.inspect_container(name))
        return None

    def inspect_container(self, container: str) -> dict[str, Any]:
        with _calling(f"inspecting container {container[:12]}"):
            return dict(self._api.inspect_container(container))

    def containers(self, labels: Mapping[str, str], all: bool = True) -> list[dict[str, Any]]:
        """Containers carrying every label in ``labels`` (raw /containers/json rows)."""
        with _calling("listing containers"):
            return list(self._api.containers(all=all, filters=_label_filters(labels)))

    def stop(self, container: str, timeout: int = 10) -> None:
        with _calling(f"stopping container {container[:12]}", missing=docker.errors.NotFound):
            self._api.stop(container, timeout=timeout)

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
        """``docker rm -v``: anonymous volumes go with the container; named ones always stay."""
        with _calling(f"removing container {container[:12]}", missing=docker.errors.NotFound):
            self._api.remove_container(container, force=force, v=True)

    def logs(self, container: str, tail: int | None = None) -> str:
        with _calling(f"reading logs of {container[:12]}"):
            raw = self._api.logs(container, stdout=True, stderr=True,
                                 tail="all" if tail is None else tail)
        return bytes(raw).decode(errors="replace")

    def stream_logs(self, container: str, tail: int | None = None,
                    follow: bool = False) -> Iterator[str]:
        """The log as chunks of text: the last ``tail`` lines (None: all), then, with
        ``follow``, what the container writes until it stops."""
        with _calling(f"reading logs of {container[:12]}"):
            for chunk in self._api.logs(container, stream=True, follow=follow,
                                        tail="all" if tail is None else tail):
                yield bytes(chunk).decode(errors="replace")

    def watch_output(self, container: str, on_output: Callable[[], None]) -> Callable[[], None]:
        """Call ``on_output`` (from a thread of its own) each time the container writes to its
        log from now on; the callable returned stops watching. Best effort: where the log
        cannot be followed (a logging driver that cannot be read), it is never called."""
        try:
            stream = self._api.logs(container, stream=True, follow=True, tail=0)
        except Exception:  # noqa: BLE001 - a hint, never a failure: the caller polls anyway
            return lambda: None

        def pump() -> None:
            try:
                for _ in stream:
                    on_output()
            except Exception:  # noqa: BLE001, S110 - closed by stop(), or the engine went away
                pass

        thread = threading.Thread(target=pump, name=f"output of {container[:12]}", daemon=True)
        thread.start()

        def stop() -> None:
            try:
                stream.close()
            except Exception:  # noqa: BLE001 - e.g. SSH: the SDK cannot cancel its streams
                return  # the thread ends with the container's log, or with the process
            thread.join(timeout=1)

        return stop

    def put_archive(self, container: str, path: str, data: bytes) -> None:
        """Unpack the tar ``data`` into ``path`` of a (created) container: works on a remote
        engine, where a bind mount of a local path cannot."""
        with _calling(f"copying files into {container[:12]}"):
            self._api.put_archive(container, path, data)

    # --- volumes ----------------------------------------------------------------------------
    def create_volume(self, name: str, labels: Mapping[str, str] | None = None) -> None:
        with _calling(f"creating volume {name}"):
            self._api.create_volume(name, labels=dict(labels or {}))

    def volume_exists(self, name: str) -> bool:
        with _calling(f"inspecting volume {name}", missing=docker.errors.NotFound):
            self._api.inspect_volume(name)
            return True
        return False

    def remove_volume(self, name: str, force: bool = False) -> None:
        with _calling(f"removing volume {name}", missing=docker.errors.NotFound):
            self._api.remove_volume(name, force=force)

    def volumes(self, labels: Mapping[str, str]) -> list[str]:
        """Names of the volumes carrying every label in ``labels``."""
        with _calling("listing volumes"):
            found = self._api.volumes(filters=_label_filters(labels)).get("Volumes") or []
        return sorted(str(v["Name"]) for v in found)
