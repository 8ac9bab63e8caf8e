"""The lifecycle's decisions, pure: what ``up`` does with an existing container, when a GPU
plan may fall back to CPU, when the service counts as ready (or failed), and the rows
``status`` prints. :mod:`launcher._up` and the ``down``/``status``/``logs`` commands execute
them against the engine; the tests here need no daemon.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from launcher._errors import LauncherError
from launcher._gpus import DeviceRequest
from launcher._options import CONTAINER_PORT
from launcher._plan import LABEL_MANAGED, LABEL_NAME, LABEL_PLAN
from launcher._probe import GpuInfo, Probe

__all__ = [
    "TOOLKIT_HINT",
    "Decision",
    "Verdict",
    "curl_example",
    "decide",
    "driver_too_old",
    "format_status",
    "gpu_runtime_missing",
    "gpus_assigned",
    "is_remote_engine",
    "judge_readiness",
    "may_fall_back",
    "memlock_refused",
    "named_volumes",
    "parse_probe_json",
    "parse_timestamp",
    "service_url",
    "status_row",
    "with_memlock",
]

TOOLKIT_HINT = ("install the NVIDIA Container Toolkit, run 'nvidia-ctk runtime configure "
                "--runtime=docker' and restart dockerd (systemctl restart docker)")

# One image of the digits data set (0), as load_digits() gives it: the curl a user can paste.
_DIGIT_ZERO = [0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0, 0, 3, 15, 2, 0, 11, 8, 0,
               0, 4, 12, 0, 0, 8, 8, 0, 0, 5, 8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0,
               0, 2, 14, 5, 10, 12, 0, 0, 0, 0, 6, 13, 10, 0, 0, 0]


# --- up: keep, replace or create ------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    action: str  # "create", "keep" or "replace"
    reason: str


def decide(name: str, existing: Mapping[str, Any] | None, plan_hash: str,
           image_id: str) -> Decision:
    """What ``up`` does, given ``docker inspect`` of the container named ``name`` (None: none).

    Same plan and image, running → keep it; anything else this launcher made → replace it. A
    container of that name the launcher did not make is never touched.
    """
    if existing is None:
        return Decision("create", f"no container {name}")
    labels = (existing.get("Config") or {}).get("Labels") or {}
    if labels.get(LABEL_MANAGED) != "true":
        raise LauncherError(f"a container named {name} exists and launcher did not create it",
                            hint=f"choose another --name, or remove it: docker rm -f {name}")
    if labels.get(LABEL_PLAN) != plan_hash:
        return Decision("replace", f"the plan changed ({labels.get(LABEL_PLAN)} → {plan_hash})")
    if existing.get("Image") != image_id:
        return Decision("replace", "the image was rebuilt")
    state = existing.get("State") or {}
    if not state.get("Running"):
        return Decision("replace", f"it is {state.get('Status', 'not running')}")
    return Decision("keep", "already running with the same plan")


def named_volumes(binds: Sequence[str]) -> list[str]:
    """The named volumes among ``HostConfig.Binds`` (a source that is not a host path)."""
    sources = [b.split(":", 1)[0] for b in binds if ":" in b]
    return [s for s in sources if not s.startswith("/")]


# --- GPUs: preflight and fallback -----------------------------------------------------------


def gpu_runtime_missing(runtimes: Sequence[str], cdi_spec_dirs: Sequence[str]) -> str | None:
    """Why the engine cannot hand GPUs to containers (``docker info``), or None if it can."""
    if "nvidia" in runtimes or cdi_spec_dirs:
        return None
    return (f"the Docker engine has no NVIDIA runtime (runtimes: {', '.join(runtimes) or 'none'})"
            " and no CDI spec directories")


def may_fall_back(requests: Sequence[DeviceRequest], require_gpu: bool) -> bool:
    """CPU instead of GPUs only for ``all`` or a count: never for named devices, which the user
    chose on purpose, and never with ``--require-gpu``."""
    return bool(requests) and not require_gpu and not any(r.names_devices for r in requests)


def driver_too_old(message: str) -> bool:
    """The NVIDIA Container Toolkit refused an image whose ``NVIDIA_REQUIRE_CUDA`` the driver
    does not meet (``unsatisfied condition: cuda>=13.0``)."""
    return "unsatisfied condition: cuda" in message


def memlock_refused(message: str) -> bool:
    """The runtime could not raise RLIMIT_MEMLOCK (8) to the plan's unlimited: the engine itself
    runs under a lower hard limit without CAP_SYS_RESOURCE (rootless, or inside a container)."""
    return "rlimit type 8" in message and "operation not permitted" in message


def with_memlock(body: Mapping[str, Any], limit: int) -> dict[str, Any]:
    """``body`` with the memlock ulimit capped at ``limit`` bytes (the plan label unchanged, so
    ``up`` again still sees the same plan)."""
    host = dict(body["HostConfig"])
    host["Ulimits"] = [{**u, "Soft": limit, "Hard": limit} if u["Name"] == "memlock" else u
                       for u in host.get("Ulimits") or ()]
    return {**body, "HostConfig": host}


# --- waiting for the service ----------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    state: str  # "ready", "wait" or "failed"
    reason: str = ""


def judge_readiness(state: Mapping[str, Any], restart_count: int, initial_restarts: int,
                    readyz: int | None, use_healthcheck: bool, elapsed: float,
                    timeout: float) -> Verdict:
    """One look at a starting container: ``State`` and ``RestartCount`` from inspect, and the
    status of ``GET /readyz`` through the published port (None: no answer, or not polled).

    Ready on a 200 (or, with ``use_healthcheck``, the healthcheck's ``healthy``); failed as soon
    as the container exited, restarted or turned unhealthy, or when the time is up.
    """
    health = (state.get("Health") or {}).get("Status")
    if readyz == 200 or (use_healthcheck and health == "healthy"):
        return Verdict("ready")
    if restart_count > initial_restarts:
        return Verdict("failed", f"the container exited (code {state.get('ExitCode')}) and was "
                                 f"restarted {restart_count - initial_restarts} time(s)")
    if state.get("Status") in ("exited", "dead"):
        return Verdict("failed", f"the container exited with code {state.get('ExitCode')}")
    if health == "unhealthy":
        return Verdict("failed", "the container's healthcheck reports unhealthy")
    if elapsed >= timeout:
        return Verdict("failed", f"not ready after {timeout:g}s")
    return Verdict("wait")


def service_url(ports: Mapping[str, Any] | None, container_port: int = CONTAINER_PORT
                ) -> str | None:
    """``http://IP:PORT`` for the service from inspect's ``NetworkSettings.Ports`` (a binding
    on every address is reached through 127.0.0.1); None when the port is not published."""
    bindings = (ports or {}).get(f"{container_port}/tcp") or []
    for binding in bindings:
        ip, port = binding.get("HostIp") or "", binding.get("HostPort") or ""
        if not port:
            continue
        if ip in ("", "0.0.0.0", "::"):
            ip = "127.0.0.1"
        return f"http://[{ip}]:{port}" if ":" in ip else f"http://{ip}:{port}"
    return None


def curl_example(url: str) -> str:
    body = json.dumps({"inputs": [_DIGIT_ZERO]}, separators=(",", ":"))
    return f"curl -s {url}/predict -d '{body}'"


def is_remote_engine(docker_host: str | None) -> bool:
    """True when ``DOCKER_HOST`` names another machine, whose GPUs this host's NVML cannot see."""
    if not docker_host:
        return False
    parts = urlsplit(docker_host)
    if parts.scheme in ("unix", "npipe", "fd"):
        return False
    return parts.hostname not in ("localhost", "127.0.0.1", "::1")


# --- status ---------------------------------------------------------------------------------


def parse_timestamp(text: str) -> datetime | None:
    """Docker's RFC 3339 times with nanoseconds ("2026-11-28T07:38:20.123456789Z")."""
    if not text or text.startswith("0001-"):
        return None
    head, _, frac = text.rstrip("Z").partition(".")
    offset = ""
    for sign in ("+", "-"):
        if sign in frac:
            frac, _, tz = frac.partition(sign)
            offset = sign + tz
    stamp = head + (f".{frac[:6]}" if frac else "") + (offset or "+00:00")
    return datetime.fromisoformat(stamp).astimezone(timezone.utc)


def gpus_assigned(device_requests: Sequence[Mapping[str, Any]] | None) -> str:
    """``all``, a count, the device ids, or ``none``: what ``--gpus`` gave the container."""
    parts = []
    for req in device_requests or ():
        if req.get("DeviceIDs"):
            parts.append(",".join(req["DeviceIDs"]))
        elif req.get("Count", 0) < 0:
            parts.append("all")
        else:
            parts.append(str(req.get("Count", 0)))
    return "+".join(parts) or "none"


def _ports(ports: Mapping[str, Any] | None) -> list[str]:
    out = []
    for port, bindings in sorted((ports or {}).items()):
        for b in bindings or ():
            out.append(f"{b.get('HostIp') or '0.0.0.0'}:{b.get('HostPort')}->{port}")
    return out


def status_row(inspect: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """One container as ``status --json`` reports it."""
    state = inspect.get("State") or {}
    config = inspect.get("Config") or {}
    started = parse_timestamp(state.get("StartedAt", "")) if state.get("Running") else None
    labels = config.get("Labels") or {}
    return {
        "name": labels.get(LABEL_NAME) or str(inspect.get("Name", "")).lstrip("/"),
        "image": config.get("Image", ""),
        "state": state.get("Status", ""),
        "health": (state.get("Health") or {}).get("Status") or "none",
        "ports": _ports((inspect.get("NetworkSettings") or {}).get("Ports")),
        "gpus": gpus_assigned((inspect.get("HostConfig") or {}).get("DeviceRequests")),
        "uptime_seconds": int((now - started).total_seconds()) if started else None,
        "restarts": int(inspect.get("RestartCount") or 0),
    }


def _duration(seconds: int | None) -> str:
    """42s, 5m07s, 3h05m, 2d03h."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def format_status(rows: Sequence[Mapping[str, Any]]) -> str:
    """A table for people; no rows → a line saying so."""
    if not rows:
        return "no containers managed by launcher"
    header = ("NAME", "IMAGE", "STATE", "HEALTH", "GPUS", "UPTIME", "PORTS")
    table = [header] + [
        (r["name"], r["image"], r["state"], r["health"], r["gpus"],
         _duration(r["uptime_seconds"]), ", ".join(r["ports"]) or "-")
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1]
                     for row in table)


def parse_probe_json(text: str) -> Probe:
    """``launcher probe --json`` output (from a container on a remote engine) → :class:`Probe`.
    The container's log mixes in its stderr lines: the JSON is the object from the line "{"."""
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
