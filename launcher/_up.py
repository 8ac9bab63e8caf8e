"""``launcher up``, executed: the plan → image (built when its tag is missing), preflight,
volumes, container, readiness. Decisions come from :mod:`launcher._lifecycle`; the engine from
:mod:`launcher._engine`; this module only sequences them and reports on stderr.
"""

from __future__ import annotations

import io
import os
import resource
import sys
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
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
    is_remote_engine,
    judge_readiness,
    may_fall_back,
    memlock_refused,
    named_volumes,
    parse_probe_json,
    service_url,
    with_memlock,
)
from launcher._options import RunOptions
from launcher._plan import LABEL_MANAGED, LABEL_NAME, LABEL_PLAN, Plan, make_plan
from launcher._probe import Probe, probe_host

__all__ = [
    "UpOptions",
    "connect",
    "ensure_container",
    "ensure_image",
    "fill_wheelhouse_first",
    "find_container",
    "preflight",
    "probe_for",
    "remote_probe",
    "up",
    "wait_ready",
]

LOG_TAIL = 20  # log lines shown when the service does not come up
STOP_GRACE = 10  # seconds between SIGTERM and SIGKILL when replacing a container
_POLL = 0.1
# The probe run inside the service image on a remote engine: launcher's probe modules are
# copied in (put_archive), service.nvml is already there; NVML comes from the toolkit's mounts.
_PROBE_DIR = "/tmp/launcher-probe"
_PROBE_SCRIPT = ("import argparse, sys; from launcher.cmd_probe import run; "
                 "sys.exit(run(argparse.Namespace(json=True)))")
_PROBE_FILES = ("__init__.py", "_probe.py", "cmd_probe.py")
_PROBE_REQUEST = {"Driver": "", "Count": -1, "DeviceIDs": None,
                  "Capabilities": [["gpu", "utility"]], "Options": {}}


@dataclass(frozen=True)
class UpOptions:
    build: bool = False  # --build: build even if the image exists
    no_build: bool = False  # --no-build: fail if it is missing
    timeout: float = 180.0
    remote: bool = False  # DOCKER_HOST names another machine


def _log(line: str) -> None:
    print(f"launcher: {line}", file=sys.stderr)


# --- probing: this host's NVML, or a short-lived container on a remote engine ---------------


def probe_for(options: RunOptions, environ: Mapping[str, str], dry_run: bool,
              load: Callable[[], Any]) -> Probe | None:
    """The probe the plan is made from: None for a CPU plan or ``--no-probe``; NVML here for
    a local engine; a container on the engine itself when ``DOCKER_HOST`` is remote."""
    if not options.gpus or options.build.no_probe:
        return None
    if not is_remote_engine(environ.get("DOCKER_HOST")):
        return probe_host(load)
    if dry_run:
        _log("remote engine (DOCKER_HOST): a dry run does not probe it; --gpus taken as given")
        return None
    engine = connect(environ)
    try:
        cpu = make_plan(replace(options, gpus=(), gpus_raw=(), require_gpu=False), None)
        image = engine.image_id(cpu.image)
        if image is None:
            raise NotFound(f"the remote engine has no {cpu.image} to probe its GPUs with",
                           hint="build it there first (DOCKER_HOST=... launcher build), "
                                "or skip the probe with --no-probe")
        return remote_probe(engine, cpu.image)
    finally:
        engine.close()


def _probe_archive() -> bytes:
    """A tar for /tmp: launcher-probe/launcher/{__init__,_probe,cmd_probe}.py."""
    buf = io.BytesIO()
    package = Path(__file__).resolve().parent
    top = _PROBE_DIR.rsplit("/", 1)[1]
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for folder in (top, f"{top}/launcher"):
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name in _PROBE_FILES:
            data = (package / name).read_bytes()
            info = tarfile.TarInfo(f"{top}/launcher/{name}")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def remote_probe(engine: Engine, image: str, timeout: float = 60,
                 request: Mapping[str, Any] | None = _PROBE_REQUEST,
                 labels: Mapping[str, str] | None = None) -> Probe:
    """``launcher probe --json`` in a throwaway container of ``image`` that requests every GPU
    (``request``; None: none, for tests). An engine that cannot give GPUs makes that the probe's
    reason (no GPUs), like no NVML."""
    body = {"Image": image, "Cmd": ["python", "-c", _PROBE_SCRIPT],
            "Env": [f"PYTHONPATH={_PROBE_DIR}:/app", "NVIDIA_DRIVER_CAPABILITIES=utility"],
            "Labels": {**(labels or {}), LABEL_MANAGED: "probe"},
            "HostConfig": {"DeviceRequests": [dict(request)] if request else None,
                           "NetworkMode": "none"}}
    container = engine.create_container(body)
    try:
        engine.put_archive(container, "/tmp", _probe_archive())  # /tmp: in every image
        try:
            engine.start(container)
        except GpuRuntimeMissing as exc:
            why = exc.message.partition(": ")[2] or exc.message
            return Probe(None, None, (), reason=f"the engine cannot give containers GPUs ({why})")
        status = engine.wait(container, timeout)
        out = engine.logs(container)
    finally:
        engine.remove_container(container, force=True)
    if status != 0:
        raise LauncherError(f"probing the remote engine's GPUs in {image} exited {status}: "
                            f"{out.strip().splitlines()[-1] if out.strip() else 'no output'}",
                            hint="skip the probe with --no-probe and pass --gpus as you need")
    return parse_probe_json(out)


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


def ensure_image(engine: Engine, plan: Plan, opts: UpOptions, wheelhouse_ready: bool = False
                 ) -> str:
    """The plan's image id: present → reused (unless --build); missing → built (unless
    --no-build)."""
    existing = engine.image_id(plan.image)
    if existing and not opts.build:
        _log(f"image {plan.image} is present")
        return existing
    if not existing and opts.no_build:
        raise NotFound(f"image {plan.image} is not on the engine and --no-build was given",
                       hint="drop --no-build to build it, or build it first: launcher build")
    from launcher.cmd_build import build_image, spec_from_plan

    spec = replace(spec_from_plan(plan), labels=_user_labels(plan),
                   wheelhouse_ready=wheelhouse_ready)
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
        image_id = ensure_image(engine, plan, opts, wheelhouse_ready=plan is not checked)
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

