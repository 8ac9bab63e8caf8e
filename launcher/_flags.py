"""Docker-style ``run`` flags parsed like the Docker CLI (docker/cli ``opts/``, go-connections
``nat``): ``-p``, ``-v``, ``-e``, ``--env-file``, ``--restart``, ``--name``; the resource
limits (``--memory``, ``--shm-size``, ``--cpus``, ``--ulimit``) are :mod:`launcher._limits`.

Each parser is a pure function that returns Engine API values or raises :class:`FlagError`
with Docker's own text. Where the Docker CLI passes a value through and the *daemon* rejects it
(a bad volume mode, an unknown restart policy), we reject it up
front with the daemon's text, so the user gets exit 2 before anything is touched.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

__all__ = [
    "FlagError",
    "PortMapping",
    "Volume",
    "parse_env",
    "parse_env_file",
    "parse_publish",
    "parse_restart",
    "parse_timeout",
    "parse_volume",
    "port_maps",
    "validate_name",
    "volume_source",
]

_PROTOS = ("tcp", "udp", "sctp")
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+\Z")
_VOLUME_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*\Z")
_VOLUME_MODES = frozenset(
    {"ro", "rw", "z", "Z", "nocopy", "shared", "rshared", "slave", "rslave", "private",
     "rprivate", "consistent", "cached", "delegated"}
)
_GO_INT = re.compile(r"[+-]?[0-9]+\Z")  # --restart's retry count, as Go's Atoi reads it


class FlagError(ValueError):
    """A flag value Docker would reject; the message is Docker's text for it."""


# --- -p / --publish -------------------------------------------------------------------------


@dataclass(frozen=True)
class PortMapping:
    """One container port ("8000/tcp") bound to a host IP and port ("" = any / ephemeral)."""

    port: str
    host_ip: str
    host_port: str


def _port_range(text: str) -> tuple[int, int]:
    """go-connections ``ParsePortRange``: ``N`` or ``N-M``, each a uint16."""
    if text == "":
        raise ValueError("empty string specified for ports")
    parts = text.split("-")
    numbers: list[int] = []
    for part in parts[: 1 if len(parts) == 1 else 2]:
        if not part.isascii() or not part.isdigit() or int(part) > 65535:
            raise ValueError(part)
        numbers.append(int(part))
    start, end = numbers[0], numbers[-1]
    if end < start:
        raise ValueError(f"invalid range specified for port: {text}")
    return start, end


def _long_publish(value: str) -> str:
    """docker/cli ``convertToStandardNotation``: ``target=80,published=8080`` → ``8080:80/tcp``."""
    params = {"protocol": "tcp"}
    for param in value.split(","):
        key, has_value, val = param.partition("=")
        if not has_value or key == "":
            raise FlagError(
                f"invalid publish opts format (should be name=value but got '{param}')"
            )
        params[key] = val
    return f"{params.get('published', '')}:{params.get('target', '')}/{params['protocol']}"


def parse_publish(value: str) -> list[PortMapping]:
    """One ``-p`` value → its port mappings (go-connections ``nat.ParsePortSpec``)."""
    raw = _long_publish(value) if "=" in value else value
    parts = raw.split(":")
    if len(parts) == 1:
        ip, host_port, container = "", "", parts[0]
    elif len(parts) == 2:
        ip, host_port, container = "", parts[0], parts[1]
    else:
        ip, host_port, container = ":".join(parts[:-2]), parts[-2], parts[-1]
    container, _, proto = container.partition("/")
    proto = proto or "tcp"
    if ip.startswith("["):
        if not ip.endswith("]"):
            raise FlagError(f"invalid IP address {ip}: missing ']' in address")
        ip = ip[1:-1]
    if ip:
        try:
            if "%" in ip:  # Go's net.ParseIP has no zones
                raise ValueError(ip)
            ipaddress.ip_address(ip)
        except ValueError:
            raise FlagError(f"invalid IP address: {ip}") from None
    if container == "":
        raise FlagError(f"no port specified: {raw}<empty>")
    try:
        start, end = _port_range(container)
    except ValueError:
        raise FlagError(f"invalid containerPort: {container}") from None
    host_start = host_end = 0
    if host_port:
        try:
            host_start, host_end = _port_range(host_port)
        except ValueError:
            raise FlagError(f"invalid hostPort: {host_port}") from None
        if end - start != host_end - host_start and end != start:
            raise FlagError(
                "invalid ranges specified for container and host Ports: "
                f"{container} and {host_port}"
            )
    if proto.lower() not in _PROTOS:  # checked last, as the go-connections in docker 28 does
        raise FlagError(f"invalid proto: {proto}")
    proto = proto.lower()
    count = end - start + 1
    mappings = []
    for i in range(count):
        bound = ""
        if host_port:
            bound = str(host_start + i)
            if count == 1 and host_start != host_end:  # a dynamic host range to allocate into
                bound += f"-{host_end}"
        mappings.append(PortMapping(f"{start + i}/{proto}", ip, bound))
    return mappings


def port_maps(mappings: Sequence[PortMapping]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(Config.ExposedPorts, HostConfig.PortBindings)`` as the Docker CLI sends them."""
    exposed: dict[str, Any] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for m in mappings:
        exposed.setdefault(m.port, {})
        bindings.setdefault(m.port, []).append({"HostIp": m.host_ip, "HostPort": m.host_port})
    return exposed, dict(bindings)


# --- -v / --volume --------------------------------------------------------------------------


@dataclass(frozen=True)
class Volume:
    """A ``-v`` value: a bind (``source`` a host path), a named volume, or anonymous (no source).

    ``bind`` is the ``HostConfig.Binds`` string (relative host paths made absolute, as the CLI
    does); anonymous volumes go to ``Config.Volumes`` instead.
    """

    source: str
    target: str
    mode: str

    @property
    def bind(self) -> str:
        return ":".join(p for p in (self.source, self.target, self.mode) if p)

    @property
    def is_named(self) -> bool:
        return bool(self.source) and not self.source.startswith("/")


def _host_path(source: str, cwd: str) -> str:
    # A relative host path (., ./x, ../x) is taken from cwd, as compose does; a name is a name.
    if source in (".", "..") or source.startswith(("./", "../")):
        return os.path.normpath(os.path.join(cwd, source))
    return source


def volume_source(value: str, cwd: str) -> str:
    """A ``-v`` value with its relative host path made absolute from ``cwd`` (as
    :func:`parse_volume` takes it): for values read where ``cwd`` is not this process's."""
    source, colon, rest = value.partition(":")
    return _host_path(source, cwd) + colon + rest if colon else value


def parse_volume(value: str, cwd: str) -> Volume:
    """One ``-v`` value → :class:`Volume`, with the CLI's and the daemon's rejections."""
    if value == "":
        raise FlagError("invalid empty volume spec")
    parts = value.split(":")
    if any(p == "" for p in parts):
        raise FlagError(f"invalid spec: {value}: empty section between colons")
    if len(parts) > 3:
        raise FlagError(f"invalid volume specification: '{value}'")
    if len(parts) == 1:
        source, target, mode = "", parts[0], ""
    else:
        source, target, mode = parts[0], parts[1], parts[2] if len(parts) == 3 else ""
    source = _host_path(source, cwd)
    if not target.startswith("/"):
        raise FlagError(
            f"invalid volume specification: '{value}': "
            f"invalid mount path: '{target}' mount path must be absolute"
        )
    for opt in filter(None, mode.split(",")):
        if opt not in _VOLUME_MODES:
            raise FlagError(f"invalid mode: {opt}")
    if source and not source.startswith("/") and not _VOLUME_NAME.match(source):
        raise FlagError(
            f'create {source}: "{source}" includes invalid characters for a local volume name, '
            'only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. '
            "If you intended to pass a host directory, use absolute path"
        )
    return Volume(source, str(PurePosixPath(target)), mode)


# --- -e / --env-file ------------------------------------------------------------------------


def parse_env(value: str, environ: Mapping[str, str]) -> str:
    """docker/cli ``ValidateEnv``: ``K=V`` as is; a bare ``K`` takes the caller's value if set."""
    key, has_value, _ = value.partition("=")
    if key == "":
        raise FlagError(f"invalid environment variable: {value}")
    if not has_value and key in environ:
        return f"{key}={environ[key]}"
    return value


def parse_env_file(data: bytes, path: str, environ: Mapping[str, str]) -> list[str]:
    """docker/cli ``ParseEnvFile``: ``K=V`` lines verbatim, ``#`` comments, bare ``K`` from the
    caller's environment (dropped when unset), a UTF-8 BOM on the first line ignored."""
    result: list[str] = []
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for number, raw in enumerate(lines, start=1):
        raw = raw[:-1] if raw.endswith(b"\r") else raw
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            raise FlagError(
                f"invalid env file ({path}): contains invalid utf8 bytes at line {number}"
            ) from None
        if number == 1:
            text = text.removeprefix("\ufeff")
        line = text.lstrip()
        if not line or line.startswith("#"):
            continue
        key, has_value, val = line.partition("=")
        key = key.lstrip(" \t")
        if " " in key or "\t" in key:
            raise FlagError(f"invalid env file ({path}): variable '{key}' contains whitespaces")
        if key == "":
            raise FlagError(f"invalid env file ({path}): no variable name on line '{line}'")
        if has_value:
            result.append(f"{key}={val}")
        elif key in environ:
            result.append(f"{key.strip()}={environ[key]}")
    return result


# --- --timeout ------------------------------------------------------------------------------


def parse_timeout(value: str) -> float:
    """``up --timeout``: a finite number of seconds above 0 (the launcher's own flag)."""
    try:
        seconds = float(value)
    except ValueError:
        raise FlagError("not a number of seconds") from None
    if not 0 < seconds < float("inf"):
        raise FlagError("must be a number of seconds above 0")
    return seconds


# --- --restart / --name ---------------------------------------------------------------------


def parse_restart(value: str) -> dict[str, Any]:
    """docker/cli ``ParseRestartPolicy`` plus the daemon's validation → ``RestartPolicy``."""
    name, has_colon, count_text = value.partition(":")
    if has_colon and name == "":
        raise FlagError("invalid restart policy format: no policy provided before colon")
    count = 0
    if count_text:
        if not _GO_INT.match(count_text):
            raise FlagError(
                "invalid restart policy format: maximum retry count must be an integer"
            )
        count = int(count_text)
    if value == "":  # docker sends no policy; the daemon reads that as "no"
        return {"Name": "", "MaximumRetryCount": 0}
    if name not in ("no", "always", "unless-stopped", "on-failure"):
        raise FlagError(f"invalid restart policy '{name}'")
    if count and name != "on-failure":
        raise FlagError(f"maximum retry count cannot be used with restart policy '{name}'")
    if count < 0:
        raise FlagError("maximum retry count cannot be negative")
    return {"Name": name, "MaximumRetryCount": count}


def validate_name(value: str) -> str:
    """A container name the daemon accepts (also used as the prefix of its volume names)."""
    if not _NAME.match(value):
        raise FlagError(
            f"Invalid container name ({value}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )
    return value
