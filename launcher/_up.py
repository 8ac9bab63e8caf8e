"""``launcher up``, executed: the plan → image (built when its tag is missing), preflight,
volumes, container, readiness. Decisions come from :mod:`launcher._lifecycle`; the engine from
:mod:`launcher._engine`; this module only sequences them and reports on stderr.
"""

from __future__ import annotations

import functools
import json
import resource
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from launcher._build import image_tag
from launcher._builder import (
    build_image,
    build_predictor_image,
    prepare_wheelhouse,
    service_image_id,
)
from launcher._engine import EngineAPI, EngineInfo, connect
from launcher._engine_errors import (
    TOOLKIT_HINT,
    DriverTooOld,
    GpuRuntimeMissing,
    MemlockRefused,
    NotFound,
    PortInUse,
)
from launcher._engine_memory import EngineMemory
from launcher._errors import LauncherError
from launcher._gpu_preflight import (
    cuda_visible_devices_warning,
    dev_char_entries,
    dev_char_warning,
    image_requirement_error,
    nvidia_device_nodes,
)
from launcher._lifecycle import (
    curl_example,
    decide,
    gpu_runtime_missing,
    judge_readiness,
    may_fall_back,
    named_volumes,
    service_url,
    with_memlock,
)
from launcher._model import VOLUME_DIR, ModelFile, model_archive
from launcher._options import STOP_GRACE, PlanOptions
from launcher._plan import LABEL_MANAGED, LABEL_NAME, READY_PATH, Plan, make_plan, service_tag
from launcher._probe import Probe

__all__ = [
    "STOP_GRACE",
    "UpPolicy",
    "check_gpu_image",
    "copy_model",
    "ensure_container",
    "ensure_image",
    "ensure_predictor_image",
    "ensure_volumes",
    "fill_wheelhouse_first",
    "preflight",
    "served_request",
    "up",
    "wait_ready",
]

LOG_TAIL = 20  # log lines shown when the service does not come up
_POLL = 0.1
_MIN_GAP = 0.01


@dataclass(frozen=True)
class UpPolicy:
    """How ``up`` executes a plan (the plan itself comes from :class:`PlanOptions`)."""

    build: bool = False  # --build: build even if the image exists
    no_build: bool = False  # --no-build: fail if it is missing
    timeout: float = 180.0
    remote: bool = False  # DOCKER_HOST names another machine
    state_dir: Path | None = None  # where what was learned about engines is kept (None: nowhere)

    @property
    def remembers(self) -> bool:
        """What is learned about the engine is kept: a state dir, and a local engine."""
        return self.state_dir is not None and not self.remote


def _log(line: str) -> None:
    print(f"launcher: {line}", file=sys.stderr)


# --- the steps of up ------------------------------------------------------------------------


def preflight(engine: EngineAPI, plan: Plan, options: PlanOptions,
              info: Callable[[], EngineInfo] | None = None) -> Plan:
    """A GPU plan needs an engine that can hand out GPUs (``docker info``: an ``nvidia``
    runtime or CDI); without one, fall back to CPU where allowed (a new plan: another image),
    else fail with the hint. ``--no-probe`` takes ``--gpus`` as given: the engine itself
    decides at start. ``info`` answers ``docker info`` (``up``'s one read); else it is asked."""
    if not plan.gpu or options.build.no_probe:
        return plan
    facts = (info or engine.info)()
    why = gpu_runtime_missing(facts.runtimes, facts.cdi_spec_dirs)
    if why is None:
        return plan
    if not may_fall_back(options.gpus, options.require_gpu):
        raise GpuRuntimeMissing(f"--gpus {' '.join(options.gpus_raw)}: {why}", hint=TOOLKIT_HINT)
    cpu = make_plan(options, None, root=plan.build.context, cpu_fallback=why)
    for warning in cpu.warnings:
        _log(f"warning: {warning}")
    return cpu


def fill_wheelhouse_first(engine: EngineAPI, plan: Plan, policy: UpPolicy,
                          explicit_tag: bool) -> Plan:
    """With ``--wheelhouse`` and a content-hash tag, a build fills the wheelhouse first and
    tags the image after the filled one: the tag covers the wheels the build gets, so the next
    ``up`` finds the same tag instead of building (and replacing the container) once more.
    The plan returned says what was decided: ``build.wheelhouse_ready`` is True when it was
    filled here (and its tag is then the new one)."""
    spec = plan.build
    if (spec.wheelhouse is None or explicit_tag or policy.no_build or _given(plan)
            or not (policy.build or engine.image_id(spec.tag) is None)):
        return plan
    prepare_wheelhouse(engine, spec, _log)
    tag = image_tag(spec.context, spec.dockerfile, spec.build_args, wheelhouse=spec.wheelhouse)
    return plan.with_build(replace(spec, tag=tag, wheelhouse_ready=True))


def _given(plan: Plan) -> bool:
    return plan.predictor is not None and plan.predictor.given_service_image


def ensure_image(engine: EngineAPI, plan: Plan, policy: UpPolicy) -> str:
    """The service image's id: present → reused (unless --build); missing → built (unless
    --no-build) as ``plan.build`` says. A ``--service-image`` is only looked up."""
    tag = plan.build.tag
    if _given(plan):
        return service_image_id(engine, tag)
    existing = engine.image_id(tag)
    if existing and not policy.build:
        _log(f"image {tag} is present")
        return existing
    if not existing and policy.no_build:
        raise NotFound(f"image {tag} is not on the engine and --no-build was given",
                       hint="drop --no-build to build it, or build it first: launcher build")
    result = build_image(engine, plan.build, log=_log)
    return result.image_id or engine.image_id(tag) or ""


def ensure_predictor_image(engine: EngineAPI, plan: Plan, policy: UpPolicy) -> str | None:
    """With --predictor, the derived image's id: present → reused (its content-hash tag says
    nothing changed); missing → built FROM the service image. None without --predictor."""
    predictor = plan.predictor
    if predictor is None:
        return None
    existing = engine.image_id(predictor.tag)
    if existing and not policy.build:
        _log(f"image {predictor.tag} is present (same predictor, code and requirements)")
        return existing
    if not existing and policy.no_build:
        raise NotFound(f"image {predictor.tag} is not on the engine and --no-build was given",
                       hint="drop --no-build to build it, or build it first: launcher build "
                            "--predictor MODULE:CLASS --code DIR")
    result = build_predictor_image(engine, predictor, plan.build.context / "requirements.lock",
                                   log=_log, verbose=plan.build.verbose)
    return result.image_id or engine.image_id(predictor.tag) or ""


def copy_model(engine: EngineAPI, plan: Plan, model: ModelFile) -> None:
    """A remote engine cannot mount a file of this host: copy it into the volume mounted at
    /models, through a container that is created, never started, and removed."""
    binds = [b for b in plan.create["HostConfig"]["Binds"]
             if b.split(":")[1:2] == [VOLUME_DIR]]
    body = {"Image": plan.image, "Entrypoint": [], "Cmd": ["true"], "User": "0",
            "Labels": {**plan.build.labels, LABEL_MANAGED: "model-copy"},
            "HostConfig": {"Binds": binds, "NetworkMode": "none"}}
    helper = engine.create_container(body)
    try:
        engine.put_archive(helper, VOLUME_DIR, model_archive(model))
    finally:
        engine.remove_container(helper, force=True)
    _log(f"copied {model.path} into {binds[0].split(':')[0] if binds else VOLUME_DIR} "
         f"as {model.container_path}")


def ensure_volumes(engine: EngineAPI, plan: Plan) -> None:
    """The default named volumes (NAME-models, NAME-data) exist, labelled as this launcher's,
    so ``down --volumes`` finds them; other named volumes the engine creates as usual."""
    labels = {LABEL_MANAGED: "true", LABEL_NAME: plan.name, **plan.build.labels}
    ours = {f"{plan.name}-models", f"{plan.name}-data"}

    def ensure(volume: str) -> None:
        if not engine.volume_exists(volume):
            engine.create_volume(volume, labels=labels)

    # each volume at once (a round trip is mostly waiting); a failure is raised in the order
    # of the binds
    volumes = [v for v in named_volumes(plan.create["HostConfig"]["Binds"]) if v in ours]
    with ThreadPoolExecutor() as pool:
        list(pool.map(ensure, volumes))


def _create_and_start(engine: EngineAPI, plan: Plan, body: Mapping[str, Any]) -> str:
    container = engine.create_container(body, name=plan.name)
    try:
        engine.start(container)
    except GpuRuntimeMissing as exc:
        engine.remove_container(container, force=True)
        raise GpuRuntimeMissing(f"starting {plan.name}: the engine cannot give containers GPUs: "
                                f"{exc.detail}", hint=TOOLKIT_HINT, detail=exc.detail) from None
    except PortInUse as exc:
        engine.remove_container(container, force=True)
        raise PortInUse(exc.message, hint="publish another host port (-p 127.0.0.1:PORT:8000), "
                                          "or stop what holds it", detail=exc.detail) from None
    except DriverTooOld as exc:
        engine.remove_container(container, force=True)
        raise DriverTooOld(f"starting {plan.name}: the NVIDIA driver is too old for "
                           f"{plan.image}: {exc.requirement}", hint=exc.hint,
                           detail=exc.detail) from None
    except LauncherError:
        engine.remove_container(container, force=True)
        raise
    return container


def _memlock_hard(body: Mapping[str, Any]) -> int:
    """The create body's memlock hard limit (-1: unlimited, the default)."""
    ulimits = body["HostConfig"].get("Ulimits") or ()
    return next((int(u["Hard"]) for u in ulimits if u["Name"] == "memlock"), -1)


def _capped(engine: EngineAPI, plan: Plan, limit: int) -> str:
    _log(f"warning: the engine cannot raise memlock to unlimited; capped at {limit} bytes "
         "(its limit); pinned-memory copies may be slower; --ulimit memlock=N sets it "
         "explicitly")
    return _create_and_start(engine, plan, with_memlock(plan.create, limit))


def _memory(engine: EngineAPI, policy: UpPolicy,
            info: Callable[[], EngineInfo] | None = None) -> EngineMemory | None:
    if not policy.remembers or policy.state_dir is None:  # (the second narrows the type)
        return None
    engine_id = (info or engine.info)().engine_id
    return EngineMemory(policy.state_dir, engine_id) if engine_id else None


def _start(engine: EngineAPI, plan: Plan, policy: UpPolicy,
           memory_of: Callable[[], EngineMemory | None] | None = None) -> str:
    """Create and start the plan's container. An engine that cannot raise memlock to unlimited
    (its own hard limit is lower, e.g. dockerd inside a container): locally, cap it at this
    shell's hard limit (the engine's, when it was started from here) with a warning, and
    remember that for this engine, so the next ``up`` does not pay for a refused start again.
    A limit the user named (``--ulimit memlock=N``) is never changed behind their back: that
    fails."""
    wanted = _memlock_hard(plan.create)
    limit = resource.getrlimit(resource.RLIMIT_MEMLOCK)[1]
    memory = None
    if wanted == -1:
        memory = memory_of() if memory_of is not None else _memory(engine, policy)
    learned = memory.memlock_limit(limit) if memory is not None else None
    if memory is not None and learned is not None:
        try:
            return _capped(engine, plan, learned)
        except MemlockRefused:
            memory.forget_memlock()  # lower than learned now: ask again below
    try:
        return _create_and_start(engine, plan, plan.create)
    except MemlockRefused:
        raise_it = "run dockerd with LimitMEMLOCK=infinity (systemd) or ulimit -l unlimited"
        if wanted != -1:  # the user's own --ulimit memlock
            here = "" if policy.remote or limit == resource.RLIM_INFINITY else (
                f" (this shell's hard limit: {limit})")
            raise LauncherError(f"starting {plan.name}: the engine cannot raise memlock to "
                                f"{wanted} bytes (--ulimit memlock; its own hard limit is lower)",
                                hint=f"pass a lower --ulimit memlock=N{here}, or {raise_it}"
                                ) from None
        if policy.remote or limit == resource.RLIM_INFINITY:
            raise LauncherError(f"starting {plan.name}: the engine cannot raise the memlock "
                                "limit to unlimited (its own hard limit is lower)",
                                hint="pass a limit it allows, --ulimit memlock=N (bytes), or "
                                     f"{raise_it}") from None
    container = _capped(engine, plan, limit)
    if memory is not None:
        memory.remember_memlock(limit, limit)
    return container


def ensure_container(engine: EngineAPI, plan: Plan, image_id: str,
                     policy: UpPolicy = UpPolicy(), *,
                     existing_of: Callable[[], dict[str, Any] | None] | None = None,
                     memory_of: Callable[[], EngineMemory | None] | None = None) -> str:
    """The plan's container, kept, replaced or created (:func:`launcher._lifecycle.decide`).
    ``existing_of`` and ``memory_of`` answer the lookups ``up`` started ahead (the container
    of that name; what was learned about the engine); without them they are asked here."""
    existing = existing_of() if existing_of is not None else engine.find_container(plan.name)
    decision = decide(plan.name, existing, plan.plan_hash, image_id)
    if existing is not None and decision.action == "keep":
        _log(f"{plan.name}: {decision.reason}; left alone")
        return str(existing["Id"])
    if existing is not None:
        _log(f"{plan.name}: replacing it: {decision.reason}")
        engine.stop(existing["Id"], timeout=STOP_GRACE)
        engine.remove_container(existing["Id"], force=True)
    container = _start(engine, plan, policy, memory_of)
    _log(f"{plan.name}: started {container[:12]} from {plan.image}")
    return container


def _readyz(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url + READY_PATH, timeout=1) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return None


def served_request(url: str) -> tuple[int | None, Any]:
    """What the service says it serves (``GET /``): a tensor model's input width, or an object
    predictor's example request body; (None, None) when it says neither."""
    try:
        with urllib.request.urlopen(url + "/", timeout=2) as response:
            about = json.loads(response.read())
    except (OSError, ValueError):
        return None, None
    if not isinstance(about, dict):
        return None, None
    width, example = about.get("input_width"), about.get("example")
    width = width if isinstance(width, int) and not isinstance(width, bool) else None
    return width, example


def wait_ready(engine: EngineAPI, container: str, name: str, policy: UpPolicy,
               clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] | None = None) -> str | None:
    """Poll until ready; the service URL (None if port 8000 is not published). Not ready in
    time, exited or unhealthy → the last log lines on stderr and a :class:`LauncherError`.

    A look every ``_POLL`` s, and sooner when the container writes to its log (a service says
    so as it becomes ready): ``up`` returns within milliseconds of the service being ready,
    not up to ``_POLL`` s later. ``sleep`` replaces that wait (tests: a fake clock's)."""
    inspect = engine.inspect_container(container)
    url = service_url((inspect.get("NetworkSettings") or {}).get("Ports"))
    poll = url if url and not policy.remote else None  # remote: the healthcheck tells
    initial = int(inspect.get("RestartCount") or 0)
    output = threading.Event()

    def until_output(seconds: float) -> None:
        output.wait(seconds)
        output.clear()

    pause = sleep or until_output
    stop_watching: Callable[[], None] | None = None  # watched from the first wait on
    try:
        started = look = clock()
        while True:
            status = _readyz(poll) if poll else None
            if status != 200 and look > started:  # a 200 is ready whatever the state says
                inspect = engine.inspect_container(container)
            verdict = judge_readiness(inspect.get("State") or {},
                                      int(inspect.get("RestartCount") or 0), initial, status,
                                      poll is None, clock() - started, policy.timeout)
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
            if stop_watching is None:  # not ready at the first look (kept running: it is)
                stop_watching = engine.watch_output(container, output.set)
            pause(max(0.0, look + _POLL - clock()))  # a look every _POLL s, whatever it took
            early = _MIN_GAP - (clock() - look)
            if early > 0:  # however chatty the container, a look at most every _MIN_GAP s
                (sleep or time.sleep)(early)
            look = clock()
    finally:
        if stop_watching is not None:
            stop_watching()


def check_gpu_image(engine: EngineAPI, plan: Plan, probe: Probe | None,
                    policy: UpPolicy, info: Callable[[], EngineInfo] | None = None) -> None:
    """Before the container exists: the checks of :mod:`launcher._gpu_preflight` for a GPU plan.
    The image's ``NVIDIA_REQUIRE_*`` against the probed driver (an error: the toolkit would
    refuse to start it), ``CUDA_VISIBLE_DEVICES`` in the image's env, and, for a local engine,
    systemd cgroups with ``/dev/char`` lacking the NVIDIA nodes (warnings). ``info`` as in
    :func:`preflight`."""
    if not plan.gpu:
        return
    env = tuple((engine.inspect_image(plan.image).get("Config") or {}).get("Env") or ())
    if probe is not None and probe.driver_version is not None:
        error = image_requirement_error(plan.image, env, probe)
        if error is not None:
            raise error
    visible = cuda_visible_devices_warning((), env)  # -e and --env-file: the plan warned
    if visible:
        _log(f"warning: {visible}")
    if not policy.remote:
        nodes = nvidia_device_nodes()
        driver = (info or engine.info)().cgroup_driver if nodes else None
        warning = dev_char_warning(driver, nodes, dev_char_entries())
        if warning:
            _log(f"warning: {warning}")


def up(plan: Plan, options: PlanOptions, policy: UpPolicy, probe: Probe | None = None) -> int:
    """Run the whole lifecycle for ``plan`` (made once, from ``options`` and ``probe``); the URL
    on stdout, progress on stderr."""
    engine: EngineAPI = connect()
    with ThreadPoolExecutor(max_workers=2) as ahead:
        # docker info is read once, and its answer serves every step that needs it: preflight
        # and the GPU image check (a GPU plan), what was learned about a local engine. Where one
        # will, it is asked from the start (the slowest question, ~15 ms here), while the image
        # is looked up; elsewhere only if a step asks.
        needed = plan.gpu or policy.remembers
        info = ahead.submit(engine.info).result if needed else functools.cache(engine.info)
        try:
            plan = preflight(engine, plan, options, info)
            explicit = service_tag(options.build) is not None  # else the content hash
            plan = fill_wheelhouse_first(engine, plan, policy, explicit)
            image_id = ensure_image(engine, plan, policy)
            image_id = ensure_predictor_image(engine, plan, policy) or image_id
            check_gpu_image(engine, plan, probe, policy, info)
            # What the container step asks the engine does not depend on the volumes: at once.
            existing = ahead.submit(engine.find_container, plan.name)
            memory = ahead.submit(_memory, engine, policy, info)
            ensure_volumes(engine, plan)
            if options.model is not None and options.model.in_volume:
                copy_model(engine, plan, options.model)
            container = ensure_container(engine, plan, image_id, policy,
                                         existing_of=existing.result, memory_of=memory.result)
            url = wait_ready(engine, container, plan.name, policy)
        finally:
            engine.close()
    if url is None:
        _log(f"{plan.name} is running; port 8000 is not published")
        return 0
    where = " (on the engine's host)" if policy.remote else ""
    print(url)
    _log(f"serving at {url}{where}; try:")
    # The request fits what is served (the launcher has no torch to read a model file itself):
    # a row of its width, or an object predictor's own example.
    width, example = (None, None) if policy.remote else served_request(url)
    print(f"  {curl_example(url, width, example)}", file=sys.stderr)
    return 0
