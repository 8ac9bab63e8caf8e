"""``launcher up``, executed: the plan → image (built when its tag is missing), preflight,
volumes, container, readiness. Decisions come from :mod:`launcher._lifecycle`; the engine from
:mod:`launcher._engine`; this module only sequences them and reports on stderr.
"""

from __future__ import annotations

import os
import resource
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from launcher._engine import Engine
from launcher._engine_errors import EngineUnavailable, GpuRuntimeMissing, NotFound, PortInUse
from launcher._errors import LauncherError
from launcher._lifecycle import (
    TOOLKIT_HINT,
    curl_example,
    decide,
    driver_too_old,
    gpu_runtime_missing,
    judge_readiness,
    may_fall_back,
    memlock_refused,
    named_volumes,
    service_url,
    with_memlock,
)
from launcher._options import RunOptions
from launcher._plan import LABEL_MANAGED, LABEL_NAME, LABEL_PLAN, Plan, make_plan
from launcher._probe import Probe

__all__ = [
    "STOP_GRACE",
    "UpOptions",
    "connect",
    "ensure_container",
    "ensure_image",
    "ensure_volumes",
    "fill_wheelhouse_first",
    "find_container",
    "preflight",
    "up",
    "wait_ready",
]

LOG_TAIL = 20  # log lines shown when the service does not come up
STOP_GRACE = 10  # seconds between SIGTERM and SIGKILL when replacing a container
_POLL = 0.1


@dataclass(frozen=True)
class UpOptions:
    build: bool = False  # --build: build even if the image exists
    no_build: bool = False  # --no-build: fail if it is missing
    timeout: float = 180.0
    remote: bool = False  # DOCKER_HOST names another machine


def _log(line: str) -> None:
    print(f"launcher: {line}", file=sys.stderr)


# --- the steps of up ------------------------------------------------------------------------


def _user_labels(plan: Plan) -> dict[str, str]:
    ours = {LABEL_MANAGED, LABEL_NAME, LABEL_PLAN}
    return {k: v for k, v in plan.create["Labels"].items() if k not in ours}


def fill_wheelhouse_first(engine: Engine, plan: Plan, options: RunOptions, opts: UpOptions,
                          probe: Probe | None) -> Plan:
    """With ``--wheelhouse`` and a content-hash tag, a build fills the wheelhouse first and
    plans again: the tag covers the wheels the build gets, so the next ``up`` finds the same
    tag instead of building (and replacing the container) once more."""
    if (plan.wheelhouse is None or options.build.tag is not None or opts.no_build
            or not (opts.build or engine.image_id(plan.image) is None)):
        return plan
    from launcher.cmd_build import prepare_wheelhouse, spec_from_plan

    prepare_wheelhouse(engine, spec_from_plan(plan), _log)
    return preflight(engine, make_plan(options, probe), options)


def ensure_image(engine: Engine, plan: Plan, opts: UpOptions, wheelhouse_ready: bool = False,
                 verbose: bool = False) -> str:
    """The plan's image id: present → reused (unless --build); missing → built (unless
    --no-build), with the builder's own output too when ``verbose``."""
    existing = engine.image_id(plan.image)
    if existing and not opts.build:
        _log(f"image {plan.image} is present")
        return existing
    if not existing and opts.no_build:
        raise NotFound(f"image {plan.image} is not on the engine and --no-build was given",
                       hint="drop --no-build to build it, or build it first: launcher build")
    from launcher.cmd_build import build_image, spec_from_plan

    spec = replace(spec_from_plan(plan), labels=_user_labels(plan),
                   wheelhouse_ready=wheelhouse_ready, verbose=verbose)
    result = build_image(engine, spec, log=_log)
    return result.image_id or engine.image_id(plan.image) or ""


def preflight(engine: Engine, plan: Plan, options: RunOptions) -> Plan:
    """A GPU plan needs an engine that can hand out GPUs (``docker info``: an ``nvidia``
    runtime or CDI); without one, fall back to CPU where allowed, else fail with the hint.
    ``--no-probe`` takes ``--gpus`` as given: the engine itself decides at start."""
    if not plan.gpu or options.build.no_probe:
        return plan
    info = engine.info()
    why = gpu_runtime_missing(info.runtimes, info.cdi_spec_dirs)
    if why is None:
        return plan
    if not may_fall_back(options.gpus, options.require_gpu):
        raise GpuRuntimeMissing(f"--gpus {' '.join(options.gpus_raw)}: {why}", hint=TOOLKIT_HINT)
    cpu = make_plan(options, None, cpu_fallback=why)
    for warning in cpu.warnings:
        _log(f"warning: {warning}")
    return cpu


def ensure_volumes(engine: Engine, plan: Plan) -> None:
    """The default named volumes (NAME-models, NAME-data) exist, labelled as this launcher's,
    so ``down --volumes`` finds them; other named volumes the engine creates as usual."""
    labels = {LABEL_MANAGED: "true", LABEL_NAME: plan.name, **_user_labels(plan)}
    ours = {f"{plan.name}-models", f"{plan.name}-data"}
    for volume in named_volumes(plan.create["HostConfig"]["Binds"]):
        if volume in ours and not engine.volume_exists(volume):
            engine.create_volume(volume, labels=labels)


def find_container(engine: Engine, name: str) -> dict[str, Any] | None:
    try:
        return engine.inspect_container(name)
    except NotFound:
        return None


def _create_and_start(engine: Engine, plan: Plan, body: Mapping[str, Any]) -> str:
    container = engine.create_container(body, name=plan.name)
    try:
        engine.start(container)
    except GpuRuntimeMissing as exc:
        engine.remove_container(container, force=True)
        raise GpuRuntimeMissing(f"starting {plan.name}: the engine cannot give containers GPUs: "
                                f"{exc.message.partition(': ')[2] or exc.message}",
                                hint=TOOLKIT_HINT) from None
    except PortInUse as exc:
        engine.remove_container(container, force=True)
        raise PortInUse(exc.message, hint="publish another host port (-p 127.0.0.1:PORT:8000), "
                                          "or stop what holds it") from None
    except LauncherError as exc:
        engine.remove_container(container, force=True)
        if driver_too_old(exc.message):
            raise LauncherError(f"starting {plan.name}: the NVIDIA driver is too old for "
                                f"{plan.image}: {exc.message.rpartition('condition: ')[2]}",
                                hint="upgrade the driver, or pin an older CUDA with --cuda X.Y "
                                     "(launcher probe shows what the driver runs)") from None
        raise
    return container


def _memlock_hard(body: Mapping[str, Any]) -> int:
    """The create body's memlock hard limit (-1: unlimited, the default)."""
    ulimits = body["HostConfig"].get("Ulimits") or ()
    return next((int(u["Hard"]) for u in ulimits if u["Name"] == "memlock"), -1)


def _start(engine: Engine, plan: Plan, remote: bool) -> str:
    """Create and start the plan's container. An engine that cannot raise memlock to unlimited
    (its own hard limit is lower, e.g. dockerd inside a container): locally, cap it at this
    shell's hard limit (the engine's, when it was started from here) with a warning. A limit
    the user named (``--ulimit memlock=N``) is never changed behind their back: that fails."""
    try:
        return _create_and_start(engine, plan, plan.create)
    except LauncherError as exc:
        limit = resource.getrlimit(resource.RLIMIT_MEMLOCK)[1]
        if not memlock_refused(exc.message):
            raise
        wanted = _memlock_hard(plan.create)
        raise_it = "run dockerd with LimitMEMLOCK=infinity (systemd) or ulimit -l unlimited"
        if wanted != -1:  # the user's own --ulimit memlock
            here = "" if remote or limit == resource.RLIM_INFINITY else (
                f" (this shell's hard limit: {limit})")
            raise LauncherError(f"starting {plan.name}: the engine cannot raise memlock to "
                                f"{wanted} bytes (--ulimit memlock; its own hard limit is lower)",
                                hint=f"pass a lower --ulimit memlock=N{here}, or {raise_it}"
                                ) from None
        if remote or limit == resource.RLIM_INFINITY:
            raise LauncherError(f"starting {plan.name}: the engine cannot raise the memlock "
                                "limit to unlimited (its own hard limit is lower)",
                                hint="pass a limit it allows, --ulimit memlock=N (bytes), or "
                                     f"{raise_it}") from None
    _log(f"warning: the engine cannot raise memlock to unlimited; capped at {limit} bytes "
         "(its limit); pinned-memory copies may be slower; --ulimit memlock=N sets it "
         "explicitly")
    return _create_and_start(engine, plan, with_memlock(plan.create, limit))


def ensure_container(engine: Engine, plan: Plan, image_id: str, remote: bool = False) -> str:
    existing = find_container(engine, plan.name)
    decision = decide(plan.name, existing, plan.plan_hash, image_id)
    if decision.action == "keep":
        _log(f"{plan.name}: {decision.reason}; left alone")
        return str(existing["Id"])  # type: ignore[index]
    if existing is not None:
        _log(f"{plan.name}: replacing it: {decision.reason}")
        engine.stop(existing["Id"], timeout=STOP_GRACE)
        engine.remove_container(existing["Id"], force=True)
    container = _start(engine, plan, remote)
    _log(f"{plan.name}: started {container[:12]} from {plan.image}")
    return container


def connect(environ: Mapping[str, str]) -> Engine:
    """The engine; when ``DOCKER_HOST`` names one that does not answer, the hint says so."""
    try:
        return Engine.connect()
    except EngineUnavailable as exc:
        host = environ.get("DOCKER_HOST")
        if not host:
            raise
        raise EngineUnavailable(exc.message, hint=f"no engine answers at DOCKER_HOST={host}: "
                                "start it there, or unset DOCKER_HOST for the local one") from None


def _readyz(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=1) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return None


def wait_ready(engine: Engine, container: str, name: str, opts: UpOptions,
               clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep) -> str | None:
    """Poll until ready; the service URL (None if port 8000 is not published). Not ready in
    time, exited or unhealthy → the last log lines on stderr and a :class:`LauncherError`."""
    inspect = engine.inspect_container(container)
    url = service_url((inspect.get("NetworkSettings") or {}).get("Ports"))
    poll = url if url and not opts.remote else None  # remote: the healthcheck tells
    initial = int(inspect.get("RestartCount") or 0)
    started = clock()
    while True:
        verdict = judge_readiness(inspect.get("State") or {}, int(inspect.get("RestartCount") or 0),
                                  initial, _readyz(poll) if poll else None, poll is None,
                                  clock() - started, opts.timeout)
        if verdict.state == "ready":
            _log(f"{name} is ready ({clock() - started:.1f}s)")
            return url
        if verdict.state == "failed":
            logs = engine.logs(container, tail=LOG_TAIL).rstrip()
            _log(f"last {LOG_TAIL} log lines of {name}:")
            for line in logs.splitlines() or ["(no output)"]:
                print(f"  | {line}", file=sys.stderr)
            raise LauncherError(f"{name} did not become ready: {verdict.reason}",
                                hint=f"see its log (launcher logs --name {name}); "
                                     f"remove it with launcher down --name {name}")
        sleep(_POLL)
        inspect = engine.inspect_container(container)


def up(plan: Plan, options: RunOptions, opts: UpOptions, probe: Probe | None = None) -> int:
    """Run the whole lifecycle for ``plan`` (made from ``probe``); the URL on stdout, progress
    on stderr."""
    engine = connect(os.environ)
    try:
        checked = preflight(engine, plan, options)
        plan = fill_wheelhouse_first(engine, checked, options, opts, probe)
        image_id = ensure_image(engine, plan, opts, wheelhouse_ready=plan is not checked,
                                verbose=options.build.verbose)
        ensure_volumes(engine, plan)
        container = ensure_container(engine, plan, image_id, opts.remote)
        url = wait_ready(engine, container, plan.name, opts)
    finally:
        engine.close()
    if url is None:
        _log(f"{plan.name} is running; port 8000 is not published")
        return 0
    where = " (on the engine's host)" if opts.remote else ""
    print(url)
    _log(f"serving at {url}{where}; try:")
    print(f"  {curl_example(url)}", file=sys.stderr)
    return 0

