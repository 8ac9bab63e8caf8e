"""The lifecycle's decisions, pure: what ``up`` does with an existing container, when a GPU
plan may fall back to CPU, and when the service counts as ready (or failed).
:mod:`launcher._up` and the ``down``/``logs`` commands execute them against the engine; the
tests here need no daemon.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from launcher._errors import LauncherError
from launcher._gpus import DeviceRequest
from launcher._options import CONTAINER_PORT
from launcher._plan import LABEL_MANAGED, LABEL_PLAN

__all__ = [
    "DIGITS_WIDTH",
    "Decision",
    "Verdict",
    "curl_example",
    "decide",
    "gpu_runtime_missing",
    "judge_readiness",
    "may_fall_back",
    "named_volumes",
    "service_url",
    "with_memlock",
]

# One image of the digits data set (0), as load_digits() gives it: the curl a user can paste.
_DIGIT_ZERO = [0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0, 0, 3, 15, 2, 0, 11, 8, 0,
               0, 4, 12, 0, 0, 8, 8, 0, 0, 5, 8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0,
               0, 2, 14, 5, 10, 12, 0, 0, 0, 0, 6, 13, 10, 0, 0, 0]
DIGITS_WIDTH = len(_DIGIT_ZERO)
_SPELLED_OUT = 256  # wider rows: generated in the example, not spelled out


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


def curl_example(url: str, width: int | None = DIGITS_WIDTH, example: Any = None) -> str:
    """A ``curl`` a user can paste: an object predictor's ``example`` request, else one row of
    the served model's ``width`` (the service's ``GET /`` says either; the launcher has no torch
    to read the model). The digits model gets a real digit; a wide row is generated by
    ``python3`` instead of spelled out; an unknown width asks ``GET /``."""
    if example is not None:
        body = json.dumps(example, separators=(",", ":"))
        return f"curl -s {url}/predict -d {shlex.quote(body)}"
    if width is None:
        return f"curl -s {url}/  # says the model's input_width"
    if width == DIGITS_WIDTH:
        row = _DIGIT_ZERO
    elif width > _SPELLED_OUT:
        body = f'{{"inputs": [[0.0] * {width}]}}'
        return (f"python3 -c 'import json; print(json.dumps({body}))' | "
                f"curl -s {url}/predict -d @-")
    else:
        row = [0] * width
    body = json.dumps({"inputs": [row]}, separators=(",", ":"))
    return f"curl -s {url}/predict -d '{body}'"
