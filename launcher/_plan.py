"""The launch plan: options + probe → image (Dockerfile, base, build args, tag) and the exact
Docker Engine API (1.41) ``ContainerCreate`` body. Pure: ``up --dry-run --json`` prints it, ``up``
executes it, and tests check it without a daemon (:func:`report_plan` alone writes: the plan's
explanation and warnings, on stderr). The options come from :mod:`launcher._options`.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from launcher._build import ROOT, BuildSpec, image_tag
from launcher._cuda import CudaChoice, GpuNeed, NoCudaFits, choose_cuda, cuda_table, format_version
from launcher._errors import LauncherError
from launcher._flags import parse_publish, port_maps
from launcher._gpu_preflight import cuda_visible_devices_warning
from launcher._gpus import DeviceRequest
from launcher._limits import Ulimit, merge_ulimits
from launcher._model import LABEL_MODEL
from launcher._options import CONTAINER_PORT, CPU_BASE_IMAGE, STACK_BYTES, BuildOptions, PlanOptions
from launcher._predictor_image import PredictorBuild
from launcher._probe import GpuInfo, Probe
from launcher._wheelhouse import torch_wheel_variants

__all__ = [
    "ENGINE_API_VERSION",
    "LABEL_MANAGED",
    "LABEL_NAME",
    "LABEL_PLAN",
    "PIDS_LIMIT",
    "READY_PATH",
    "ROOT",
    "SECRET_ENV",
    "Plan",
    "build_inputs",
    "cuda_choice",
    "image_labels",
    "make_plan",
    "report_plan",
]

CPU_DOCKERFILE = "Dockerfile"
GPU_DOCKERFILE = "Dockerfile.gpu"
WHEELHOUSE_MOUNT = "/wheelhouse"  # where the Dockerfiles find the in-context wheelhouse
# The Engine API version of the create bodies a plan holds (the engine it runs on negotiates
# its own, newer or equal).
ENGINE_API_VERSION = "1.41"
LABEL_MANAGED = "org.gpu-launcher.managed"
LABEL_NAME = "org.gpu-launcher.name"
LABEL_PLAN = "org.gpu-launcher.plan"
APP_USER = "10001:10001"  # the images' non-root user
TMP_SIZE = "1g"
# Pinned host memory for fast GPU copies needs memlock; a deep stack for recursive models.
DEFAULT_ULIMITS = (Ulimit("memlock", -1, -1), Ulimit("stack", STACK_BYTES, STACK_BYTES))
# Processes and threads in the container (CIS Docker Benchmark v1.6.0, 5.28): a fork bomb
# stops here.
# The service ran 10 threads here (measured after requests and scrapes): torch's intra-op pool
# grows with the CPU quota, anyio's worker pool to 40 at most, one thread per replica.
PIDS_LIMIT = 1024
# Env values the plan never prints (--dry-run --json shows the key, not the value).
SECRET_ENV = frozenset({"API_TOKEN"})
# The probe docker, compose and Kubernetes all run (tests/docker/test_kubernetes.py holds them
# equal): /readyz every 5 s, 3 s to answer, 3 misses in a row make it unhealthy; a model gets
# 180 s to load (a CUDA image on a cold GPU) before misses count.
READY_PATH = "/readyz"
HEALTH_INTERVAL_S = 5
HEALTH_TIMEOUT_S = 3
HEALTH_START_PERIOD_S = 180
HEALTH_RETRIES = 3
_NS = 1_000_000_000  # the Engine API's durations are nanoseconds


@dataclass(frozen=True)
class Plan:
    """What ``up`` runs: the image (``build``, the build that makes it when it is missing) and
    the container (``create``, the Engine API body)."""

    name: str
    build: BuildSpec
    gpu: bool
    cuda: CudaChoice | None
    explanation: str
    create: Mapping[str, Any]
    warnings: tuple[str, ...] = ()
    # --predictor: the image run is this one, built FROM the service image ``build`` makes.
    predictor: PredictorBuild | None = None

    @property
    def image(self) -> str:
        """The image the container runs: the predictor's, or the service image itself."""
        return self.predictor.tag if self.predictor is not None else self.build.tag

    @property
    def plan_hash(self) -> str:
        return str(self.create["Labels"][LABEL_PLAN])

    def with_build(self, build: BuildSpec) -> Plan:
        """This plan with ``build`` instead (e.g. a new content-hash tag once the wheelhouse is
        filled): the create body's image and plan label follow."""
        predictor = self.predictor.on(build.tag) if self.predictor is not None else None
        image = predictor.tag if predictor is not None else build.tag
        return replace(self, build=build, predictor=predictor,
                       create=_with_plan_label({**self.create, "Image": image}))

    def to_json(self) -> dict[str, Any]:
        build = self.build
        return {
            "name": self.name,
            "image": self.image,
            "dockerfile": build.dockerfile,
            "base_image": build.base_image,
            "build_args": dict(build.build_args),
            "wheelhouse": str(build.wheelhouse) if build.wheelhouse else None,
            "no_cache": build.no_cache,
            "gpu": self.gpu,
            "cuda": self.cuda.to_json() if self.cuda else None,
            "explanation": self.explanation,
            "create": {**self.create, "Env": [_hidden(e) for e in self.create["Env"]]},
            "warnings": list(self.warnings),
            "predictor": self.predictor.to_json() if self.predictor is not None else None,
        }


def torch_variant(gpu: CudaChoice, wheelhouse: Path | None) -> str:
    """The torch build a GPU image installs: the chosen wheel, except from a wheelhouse that
    holds only a CPU torch (offline, e.g. on a stand-in): then ``cpu``, named, never a guess
    (:func:`launcher.cmd_build.prepare_wheelhouse` warns that torch will run on the CPU)."""
    if wheelhouse is not None and torch_wheel_variants(wheelhouse) == {"cpu"}:
        return "cpu"
    return gpu.wheel


def build_inputs(gpu: CudaChoice | None, build: BuildOptions) -> tuple[str, str, dict[str, str]]:
    """(Dockerfile, base image, build args) for a CPU image (``gpu`` None) or a GPU one."""
    if gpu is None:
        base = build.base_image or CPU_BASE_IMAGE
        dockerfile, args = CPU_DOCKERFILE, {"BASE_IMAGE": base}
    else:
        base = build.base_image or gpu.image
        dockerfile, args = GPU_DOCKERFILE, {"CUDA_IMAGE": base, "TORCH_INDEX_URL": gpu.index_url,
                                            "TORCH_VARIANT": torch_variant(gpu, build.wheelhouse)}
    if build.wheelhouse is not None:
        args |= {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": WHEELHOUSE_MOUNT}
    return dockerfile, base, args


def service_tag(build: BuildOptions) -> str | None:
    """The service image's tag where the options name it: ``--service-image``, else ``--tag``
    unless ``--predictor`` (then ``--tag`` names the derived image); None: the content hash."""
    return build.service_image or (build.tag if build.predictor is None else None)


def _match_device(gpus: Sequence[GpuInfo], ident: str) -> list[GpuInfo]:
    """The GPU(s) a device ID names: an index, a GPU UUID, or a MIG device (``MIG-<uuid>`` or
    ``GPU:SLICE``), which NVML lists under its parent: any GPU with MIG enabled may hold it."""
    if ident.startswith("MIG-"):
        return [g for g in gpus if g.mig_enabled]
    parent, colon, _ = ident.partition(":")
    if colon:
        return [g for g in gpus if str(g.index) == parent and g.mig_enabled]
    return [g for g in gpus if ident in (str(g.index), g.uuid)]


def _selected(gpus: Sequence[GpuInfo], requests: Sequence[DeviceRequest]) -> list[GpuInfo]:
    """The GPUs the device requests give the container (count N: the first N, as the toolkit)."""
    chosen: dict[int, GpuInfo] = {}
    for req in requests:
        if req.device_ids is not None:
            for ident in req.device_ids:
                match = _match_device(gpus, ident)
                if not match:
                    found = ", ".join(f"{g.index} ({g.uuid})" for g in gpus)
                    raise LauncherError(
                        f"--gpus device={ident}: no such GPU on this host (found: {found})",
                        hint="pick an index or UUID that 'launcher probe' lists")
                chosen |= {g.index: g for g in match}
        elif req.count < 0:
            chosen |= {g.index: g for g in gpus}
        else:
            if req.count > len(gpus):
                raise LauncherError(
                    f"--gpus asks for {req.count} GPUs; this host has {len(gpus)}",
                    hint="ask for fewer, or use --gpus all")
            chosen |= {g.index: g for g in gpus[: req.count]}
    return [chosen[i] for i in sorted(chosen)]


def _quoting_warnings(options: PlanOptions) -> list[str]:
    """An unquoted device list (``--gpus device=0,2``): whatever the probe found."""
    warnings = []
    for raw, req in zip(options.gpus_raw, options.gpus, strict=True):
        if req.device_ids is not None and req.count != 0:
            ids = ",".join(req.device_ids)
            quoted = raw if raw.count("=") == 1 and raw.startswith("device=") else "device=..."
            warnings.append(
                f"--gpus {raw} reads as device={ids} plus a count of {req.count}, as Docker reads "
                f"it; to select a list of devices quote it: --gpus '\"{quoted}\"'")
    return warnings


def _gpu_warnings(options: PlanOptions, selected: Sequence[GpuInfo]) -> list[str]:
    warnings = []
    visible = cuda_visible_devices_warning(options.env)
    if visible:
        warnings.append(visible)
    for g in selected:
        if g.mig_enabled:
            warnings.append(f"GPU {g.index} ({g.name}) has MIG enabled: the container sees its MIG "
                            "devices; select one with --gpus device=MIG-<uuid>")
    return warnings


def _binds(options: PlanOptions) -> tuple[list[str], dict[str, Any]]:
    """Binds (named volumes for /models and /data unless -v names those targets) and the
    anonymous volumes (``Config.Volumes``)."""
    targets = {v.target for v in options.volumes}
    binds = [f"{options.name}-{t[1:]}:{t}" for t in ("/models", "/data") if t not in targets]
    binds += [v.bind for v in options.volumes if v.source]
    if options.model is not None and options.model.bind is not None:
        binds.append(options.model.bind)
    anonymous: dict[str, Any] = {v.target: {} for v in options.volumes if not v.source}
    return binds, anonymous


def _env(options: PlanOptions, gpu: bool) -> list[str]:
    user_keys = {e.partition("=")[0] for e in options.env}
    defaults = [f"DEVICE={'cuda' if gpu else 'cpu'}"]
    if options.model is not None:
        defaults.append(f"MODEL_PATH={options.model.container_path}")
    return [d for d in defaults if d.partition("=")[0] not in user_keys] + list(options.env)


def _hidden(entry: str) -> str:
    key, eq, _ = entry.partition("=")
    return f"{key}=<hidden>" if eq and key in SECRET_ENV else entry


def _healthcheck() -> dict[str, Any]:
    """``Config.Healthcheck``: Python's urllib, so no image needs curl (compose.gpu.yml's too)."""
    url = f"http://127.0.0.1:{CONTAINER_PORT}{READY_PATH}"
    return {
        "Test": ["CMD", "python", "-c",
                 f'import urllib.request as u; u.urlopen("{url}", timeout={HEALTH_TIMEOUT_S - 1})'],
        "Interval": HEALTH_INTERVAL_S * _NS,
        "Timeout": HEALTH_TIMEOUT_S * _NS,
        "StartPeriod": HEALTH_START_PERIOD_S * _NS,
        "Retries": HEALTH_RETRIES,
    }


def _create_body(options: PlanOptions, image: str, device_requests: list[dict[str, Any]] | None
                 ) -> dict[str, Any]:
    publish = options.publish or tuple(
        parse_publish(f"127.0.0.1:{CONTAINER_PORT}:{CONTAINER_PORT}"))
    exposed, bindings = port_maps(publish)
    binds, anonymous = _binds(options)
    body: dict[str, Any] = {
        "Image": image,
        "User": APP_USER,
        "Env": _env(options, device_requests is not None),
        "Labels": {**options.labels, LABEL_MANAGED: "true", LABEL_NAME: options.name,
                   **({LABEL_MODEL: options.model.digest} if options.model else {})},
        "ExposedPorts": exposed,
        "Healthcheck": _healthcheck(),
        "HostConfig": {
            "DeviceRequests": device_requests,
            "PortBindings": bindings,
            "Binds": binds,
            "Memory": options.memory,
            "NanoCpus": options.nano_cpus,
            "ShmSize": options.shm_size,
            "Ulimits": [u.to_api() for u in merge_ulimits(DEFAULT_ULIMITS, options.ulimits)],
            "RestartPolicy": dict(options.restart),
            "ReadonlyRootfs": True,
            "Tmpfs": {"/tmp": f"rw,nosuid,nodev,size={TMP_SIZE}"},
            "SecurityOpt": ["no-new-privileges"],
            "CapDrop": ["ALL"],
            "PidsLimit": PIDS_LIMIT,
        },
    }
    if anonymous:
        body["Volumes"] = anonymous
    return _with_plan_label(body)


def _with_plan_label(body: Mapping[str, Any]) -> dict[str, Any]:
    """``body`` labelled with the hash of everything else in it: the container changes exactly
    when the label does."""
    labels = {k: v for k, v in body["Labels"].items() if k != LABEL_PLAN}
    unlabelled = {**body, "Labels": labels}
    digest = hashlib.sha256(json.dumps(unlabelled, sort_keys=True).encode()).hexdigest()[:16]
    return {**unlabelled, "Labels": {**labels, LABEL_PLAN: digest}}


def cuda_choice(probe: Probe | None, gpus: Sequence[GpuInfo], pinned: tuple[int, int] | None,
                probe_file: Path | None = None) -> CudaChoice:
    """The CUDA image and torch wheel for ``gpus`` on ``probe``'s driver (None: not probed),
    as ``launcher up`` and ``launcher build --gpu`` both choose them; when none fits, a
    :class:`LauncherError` (exit 1) with the chooser's explanation and hint. ``probe_file``:
    the probe is that file's host (``--probe-file``), and the explanation says so."""
    host = f"for the host in {probe_file}: " if probe_file is not None else ""
    try:
        choice = choose_cuda(cuda_table(), probe.driver_version if probe else None,
                             probe.cuda_driver_version if probe else None,
                             [GpuNeed(g.name, g.compute_capability) for g in gpus], pinned)
    except NoCudaFits as exc:
        raise LauncherError(host + exc.explanation, hint=exc.hint) from None
    return replace(choice, explanation=host + choice.explanation)


TagFn = Callable[..., str]


def _default_tag(root: Path, dockerfile: str, build_args: Mapping[str, str],
                 wheelhouse: Path | None, labels: Mapping[str, str]) -> str:
    return image_tag(root, dockerfile, build_args, wheelhouse=wheelhouse, labels=labels)


def image_labels(options: PlanOptions) -> dict[str, str]:
    """The labels ``--label`` puts on the images ``up`` builds (the launcher's own are for the
    container); the content-hash tag covers them, as ``launcher build``'s does."""
    ours = {LABEL_MANAGED, LABEL_NAME, LABEL_PLAN}
    return {k: v for k, v in options.labels.items() if k not in ours}


def make_plan(options: PlanOptions, probe: Probe | None, *, root: Path = ROOT,
              tag: TagFn = _default_tag, cpu_fallback: str | None = None,
              unprobed: str = "--no-probe") -> Plan:
    """Options + probe (None: ``--no-probe``) → :class:`Plan`.

    ``unprobed`` says why a GPU plan without a probe was not probed, in its explanation
    ("not probed (--no-probe); ..."; render's is "a cluster").

    ``cpu_fallback`` (the lifecycle's, e.g. "the engine has no NVIDIA runtime") plans for CPU
    with that reason as the warning; the caller decides when that is allowed (never when the
    user named devices: :attr:`DeviceRequest.names_devices`).

    Raises :class:`LauncherError` (exit 1, with a hint) when the host cannot run what was asked:
    ``--require-gpu`` without a GPU, no CUDA image the driver and GPUs accept, unknown devices.
    """
    build = options.build
    warnings: list[str] = []
    choice: CudaChoice | None = None
    selected: list[GpuInfo] = []
    if options.gpus and cpu_fallback is not None:
        warnings.append(f"--gpus {' '.join(options.gpus_raw)}: {cpu_fallback}; running on CPU")
    elif options.gpus and probe is not None and not probe.gpus:
        why = probe.reason or "NVML sees no GPUs"
        if options.require_gpu:
            raise LauncherError(
                f"--gpus {' '.join(options.gpus_raw)} --require-gpu: no GPU found ({why})",
                hint="install the NVIDIA driver and the NVIDIA Container Toolkit "
                     "(nvidia-ctk runtime configure --runtime=docker), or drop --require-gpu")
        warnings.append(f"--gpus {' '.join(options.gpus_raw)}: no GPU found ({why}); "
                        "running on CPU")
        warnings += _quoting_warnings(options)
    elif options.gpus:
        selected = _selected(probe.gpus, options.gpus) if probe is not None else []
        choice = cuda_choice(probe, selected, build.cuda, build.probe_file)
        warnings += _quoting_warnings(options) + _gpu_warnings(options, selected)
    if build.cuda is not None and choice is None:
        warnings.append(f"--cuda {format_version(build.cuda)} ignored: this is a CPU plan")
    if build.probe_file is not None and not options.gpus:
        warnings.append(f"--probe-file {build.probe_file} ignored: this is a CPU plan "
                        "(add --gpus)")
    dockerfile, base, build_args = build_inputs(choice, build)
    labels = image_labels(options)
    image = service_tag(build) or tag(root, dockerfile, build_args, build.wheelhouse, labels)
    if choice is not None:
        explanation = choice.explanation
        if probe is None:
            explanation = f"not probed ({unprobed}); " + explanation
        if build.base_image:
            explanation += f"; --base-image {build.base_image} replaces {choice.image}"
    else:
        explanation = f"CPU image from {base}" + (" (no GPU found)" if options.gpus else "")
    requests = [r.to_api() for r in options.gpus] if choice is not None else None
    spec = BuildSpec(dockerfile=dockerfile, base_image=base, build_args=build_args, tag=image,
                     context=root, wheelhouse=build.wheelhouse, no_cache=build.no_cache,
                     labels=labels, verbose=build.verbose)
    predictor = None
    if build.predictor is not None:
        predictor = PredictorBuild.plan(
            build.predictor, image, tag=build.tag, wheelhouse=build.wheelhouse,
            labels=spec.labels, no_cache=build.no_cache,
            given_service_image=build.service_image is not None)
        explanation += f"; {build.predictor.predictor} from {build.predictor.code} on top"
    return Plan(
        name=options.name, build=spec, gpu=choice is not None, cuda=choice,
        explanation=explanation,
        create=_create_body(options, predictor.tag if predictor else image, requests),
        warnings=tuple(warnings), predictor=predictor,
    )


def report_plan(plan: Plan) -> None:
    """The plan's explanation and warnings on stderr, as up, push and render show them
    (``launcher: ...`` then ``launcher: warning: ...``)."""
    print(f"launcher: {plan.explanation}", file=sys.stderr)
    for warning in plan.warnings:
        print(f"launcher: warning: {warning}", file=sys.stderr)
