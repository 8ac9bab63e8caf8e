"""The launch plan: options + probe → image (Dockerfile, base, build args, tag) and the exact
Docker Engine API (1.41) ``ContainerCreate`` body. Pure: ``up --dry-run --json`` prints it, ``up``
executes it, and tests check it without a daemon.

:func:`add_build_options` holds the build flags ``launcher up`` shares with ``launcher build``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from launcher._cuda import (
    TORCH_VERSION,
    CudaChoice,
    GpuNeed,
    NoCudaFits,
    choose_cuda,
    cuda_table,
    format_version,
    parse_cuda_version,
)
from launcher._errors import LauncherError, UsageError
from launcher._flags import (
    MIN_MEMORY,
    FlagError,
    PortMapping,
    Ulimit,
    Volume,
    merge_ulimits,
    parse_bytes,
    parse_cpus,
    parse_env,
    parse_env_file,
    parse_publish,
    parse_restart,
    parse_ulimit,
    parse_volume,
    port_maps,
    validate_name,
)
from launcher._gpus import DeviceRequest, GpuSpecError, parse_gpus
from launcher._probe import GpuInfo, Probe

__all__ = [
    "CONTAINER_PORT",
    "CPU_BASE_IMAGE",
    "DEFAULT_NAME",
    "LABEL_MANAGED",
    "LABEL_NAME",
    "LABEL_PLAN",
    "ROOT",
    "BuildOptions",
    "Plan",
    "RunOptions",
    "add_build_options",
    "add_run_options",
    "build_inputs",
    "build_options_from_args",
    "make_plan",
    "run_options_from_args",
]

ROOT = Path(__file__).resolve().parent.parent  # the build context: Dockerfile, service/, locks
DEFAULT_NAME = "gpu-launcher"
CONTAINER_PORT = 8000
CPU_BASE_IMAGE = "python:3.11-slim"
CPU_DOCKERFILE = "Dockerfile"
GPU_DOCKERFILE = "Dockerfile.gpu"
WHEELHOUSE_MOUNT = "/wheelhouse"  # where the Dockerfiles find the in-context wheelhouse
LABEL_MANAGED = "org.gpu-launcher.managed"
LABEL_NAME = "org.gpu-launcher.name"
LABEL_PLAN = "org.gpu-launcher.plan"
APP_USER = "10001:10001"  # the images' non-root user
DEFAULT_SHM = "1g"  # PyTorch DataLoader workers share tensors through /dev/shm (docker: 64m)
TMP_SIZE = "1g"
STACK_BYTES = 64 * 1024 * 1024
# Pinned host memory for fast GPU copies needs memlock; a deep stack for recursive models.
DEFAULT_ULIMITS = (Ulimit("memlock", -1, -1), Ulimit("stack", STACK_BYTES, STACK_BYTES))

_HINT_GPUS = ("--gpus takes all, N, or key=value pairs (count=, device=, capabilities=, driver=, "
              "options=); quote a device list: --gpus '\"device=0,2\"'")
_FLAG_HINTS = {
    "--gpus": _HINT_GPUS,
    "--publish": "use [IP:][HOST_PORT:]CONTAINER_PORT[/PROTO], e.g. -p 127.0.0.1:8080:8000",
    "--volume": "use NAME:/path, /host/path:/path[:ro] or /path",
    "--env": "use KEY=VALUE, or KEY to pass the value from this shell",
    "--env-file": "one KEY=VALUE per line; # starts a comment",
    "--memory": "a size with an optional unit b, k, m, g, t, e.g. 4g",
    "--shm-size": "a size with an optional unit b, k, m, g, t, e.g. 1g",
    "--cpus": "a number of CPUs, e.g. 1.5",
    "--ulimit": "use NAME=SOFT[:HARD] in bytes or counts, -1 for unlimited, e.g. "
                "--ulimit memlock=8388608 or --ulimit nofile=1024:2048",
    "--restart": "one of no, always, unless-stopped, on-failure[:MAX_RETRIES]",
    "--name": "letters, digits, '_', '.', '-'; at least two characters",
    "--cuda": "MAJOR.MINOR of a CUDA the torch wheels exist for, e.g. 12.8",
}


# --- options ------------------------------------------------------------------------------


def add_build_options(parser: argparse.ArgumentParser, *, gpu_flag: bool = False) -> None:
    """The image flags of ``launcher build`` and ``launcher up`` (``gpu_flag``: build's --gpu)."""
    group = parser.add_argument_group("image")
    if gpu_flag:
        group.add_argument("--gpu", action="store_true",
                           help="build the CUDA image (Dockerfile.gpu) for this host's GPUs")
    group.add_argument("--base-image", metavar="IMAGE",
                       help=f"base image instead of the chosen one (CPU: {CPU_BASE_IMAGE}, "
                            "GPU: the nvidia/cuda runtime image the driver runs)")
    group.add_argument("--wheelhouse", metavar="DIR", type=Path,
                       help="build offline: install Python packages only from DIR's wheels")
    group.add_argument("--tag", metavar="TAG",
                       help="image tag instead of the content hash gpu-launcher/service:KIND-HASH")
    group.add_argument("--no-cache", action="store_true", help="build without the layer cache")
    group.add_argument("--cuda", metavar="X.Y", help="pin the CUDA version of a GPU image")
    group.add_argument("--no-probe", action="store_true",
                       help="do not read GPUs with NVML (remote engine, CI): take --gpus as given")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """``launcher up``'s container flags, named and parsed as ``docker run``'s."""
    group = parser.add_argument_group("container (as docker run)")
    group.add_argument("--name", default=DEFAULT_NAME, help=f"container name ({DEFAULT_NAME})")
    group.add_argument("--gpus", action="append", default=[], metavar="REQUEST",
                       help="GPUs as docker run --gpus: all, N, '\"device=0,2\"', ... "
                            "(no GPU found: CPU with a warning)")
    group.add_argument("--require-gpu", action="store_true",
                       help="fail instead of falling back to CPU when no GPU is found")
    group.add_argument("-p", "--publish", action="append", default=[], metavar="SPEC",
                       help=f"publish a port (default 127.0.0.1:{CONTAINER_PORT}:{CONTAINER_PORT})")
    group.add_argument("-v", "--volume", action="append", default=[], metavar="SPEC",
                       help="bind or named volume (default NAME-models:/models, NAME-data:/data)")
    group.add_argument("-e", "--env", action="append", default=[], metavar="KEY[=VALUE]",
                       help="set an environment variable (KEY alone: this shell's value)")
    group.add_argument("--env-file", action="append", default=[], metavar="FILE",
                       help="read KEY=VALUE lines from FILE (before -e)")
    group.add_argument("-m", "--memory", metavar="BYTES", help="memory limit, e.g. 8g")
    group.add_argument("--cpus", metavar="N", help="CPU limit, e.g. 2.5")
    group.add_argument("--shm-size", default=DEFAULT_SHM, metavar="BYTES",
                       help=f"size of /dev/shm ({DEFAULT_SHM})")
    group.add_argument("--ulimit", action="append", default=[], metavar="NAME=SOFT[:HARD]",
                       help="set a ulimit, -1 for unlimited; replaces the default for that name "
                            f"(memlock=-1, stack={STACK_BYTES})")
    group.add_argument("--restart", default="unless-stopped", metavar="POLICY",
                       help="restart policy (unless-stopped)")
    group.add_argument("-l", "--label", action="append", default=[], metavar="KEY=VALUE",
                       help="add a label to the container (and the volumes and image up makes)")


@dataclass(frozen=True)
class BuildOptions:
    base_image: str | None = None
    wheelhouse: Path | None = None
    tag: str | None = None
    no_cache: bool = False
    cuda: tuple[int, int] | None = None
    no_probe: bool = False


@dataclass(frozen=True)
class RunOptions:
    """``up``'s flags, parsed: every value already what the Engine API takes."""

    name: str = DEFAULT_NAME
    gpus: tuple[DeviceRequest, ...] = ()
    gpus_raw: tuple[str, ...] = ()
    require_gpu: bool = False
    publish: tuple[PortMapping, ...] = ()
    volumes: tuple[Volume, ...] = ()
    env: tuple[str, ...] = ()
    memory: int = 0
    nano_cpus: int = 0
    shm_size: int = 1 << 30
    ulimits: tuple[Ulimit, ...] = ()
    restart: Mapping[str, Any] = field(
        default_factory=lambda: {"Name": "unless-stopped", "MaximumRetryCount": 0})
    build: BuildOptions = BuildOptions()
    labels: Mapping[str, str] = field(default_factory=dict)


def _flag(flag: str, value: str, parse: Callable[[str], Any]) -> Any:
    try:
        return parse(value)
    except (FlagError, GpuSpecError, ValueError) as exc:
        raise UsageError(f'invalid argument "{value}" for "{flag}" flag: {exc}',
                         hint=_FLAG_HINTS.get(flag)) from None


def build_options_from_args(args: argparse.Namespace) -> BuildOptions:
    wheelhouse = args.wheelhouse
    if wheelhouse is not None and wheelhouse.exists() and not wheelhouse.is_dir():
        raise UsageError(f"--wheelhouse {wheelhouse}: not a directory",
                         hint="pass a folder: a missing one is created and filled with the "
                              "locked wheels")
    cuda = _flag("--cuda", args.cuda, parse_cuda_version) if args.cuda is not None else None
    known = [v.cuda for v in cuda_table().torch_variants]
    if cuda is not None and cuda not in known:
        raise UsageError(
            f'invalid argument "{args.cuda}" for "--cuda" flag: '
            f"torch {TORCH_VERSION} has no wheels for CUDA {format_version(cuda)}",
            hint="pick one of " + ", ".join(format_version(v) for v in known))
    return BuildOptions(
        base_image=args.base_image or None,
        wheelhouse=wheelhouse,
        tag=args.tag or None,
        no_cache=bool(args.no_cache),
        cuda=cuda,
        no_probe=bool(args.no_probe),
    )


def _read_env_file(path: str, environ: Mapping[str, str]) -> list[str]:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f'invalid argument "{path}" for "--env-file" flag: {exc.strerror}',
                         hint=_FLAG_HINTS["--env-file"]) from None
    return _flag("--env-file", path, lambda p: parse_env_file(data, p, environ))  # type: ignore[no-any-return]


def run_options_from_args(args: argparse.Namespace, environ: Mapping[str, str],
                          cwd: str) -> RunOptions:
    """Parse ``up``'s raw flag strings; a bad value → :class:`UsageError` echoing it (exit 2)."""
    if args.require_gpu and not args.gpus:
        raise UsageError("--require-gpu needs --gpus", hint="add --gpus all")
    memory = _flag("--memory", args.memory, parse_bytes) if args.memory else 0
    if 0 < memory < MIN_MEMORY:
        raise UsageError(f'invalid argument "{args.memory}" for "--memory" flag: '
                         "Minimum memory limit allowed is 6MB", hint=_FLAG_HINTS["--memory"])
    env: list[str] = []
    for path in args.env_file:
        env += _read_env_file(path, environ)
    env += [_flag("--env", e, lambda v: parse_env(v, environ)) for e in args.env]
    return RunOptions(
        name=_flag("--name", args.name, validate_name),
        gpus=tuple(_flag("--gpus", g, parse_gpus) for g in args.gpus),
        gpus_raw=tuple(args.gpus),
        require_gpu=bool(args.require_gpu),
        publish=tuple(m for p in args.publish for m in _flag("--publish", p, parse_publish)),
        volumes=tuple(_flag("--volume", v, lambda s: parse_volume(s, cwd)) for v in args.volume),
        env=tuple(env),
        memory=memory,
        nano_cpus=_flag("--cpus", args.cpus, parse_cpus) if args.cpus else 0,
        shm_size=_flag("--shm-size", args.shm_size, parse_bytes),
        ulimits=tuple(_flag("--ulimit", u, parse_ulimit) for u in args.ulimit),
        restart=_flag("--restart", args.restart, parse_restart),
        build=build_options_from_args(args),
        labels=dict(label.partition("=")[::2] for label in args.label),
    )


# --- the plan -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    name: str
    image: str
    dockerfile: str
    base_image: str
    build_args: Mapping[str, str]
    wheelhouse: Path | None
    no_cache: bool
    gpu: bool
    cuda: CudaChoice | None
    explanation: str
    create: Mapping[str, Any]
    warnings: tuple[str, ...] = ()

    @property
    def plan_hash(self) -> str:
        return str(self.create["Labels"][LABEL_PLAN])

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "image": self.image,
            "dockerfile": self.dockerfile,
            "base_image": self.base_image,
            "build_args": dict(self.build_args),
            "wheelhouse": str(self.wheelhouse) if self.wheelhouse else None,
            "no_cache": self.no_cache,
            "gpu": self.gpu,
            "cuda": self.cuda.to_json() if self.cuda else None,
            "explanation": self.explanation,
            "create": self.create,
            "warnings": list(self.warnings),
        }


def build_inputs(gpu: CudaChoice | None, build: BuildOptions) -> tuple[str, str, dict[str, str]]:
    """(Dockerfile, base image, build args) for a CPU image (``gpu`` None) or a GPU one."""
    if gpu is None:
        base = build.base_image or CPU_BASE_IMAGE
        dockerfile, args = CPU_DOCKERFILE, {"BASE_IMAGE": base}
    else:
        base = build.base_image or gpu.image
        dockerfile, args = GPU_DOCKERFILE, {"CUDA_IMAGE": base, "TORCH_INDEX_URL": gpu.index_url}
    if build.wheelhouse is not None:
        args |= {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": WHEELHOUSE_MOUNT}
    return dockerfile, base, args


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


def _gpu_warnings(options: RunOptions, selected: Sequence[GpuInfo]) -> list[str]:
    warnings = []
    for raw, req in zip(options.gpus_raw, options.gpus, strict=True):
        if req.device_ids is not None and req.count != 0:
            ids = ",".join(req.device_ids)
            quoted = raw if raw.count("=") == 1 and raw.startswith("device=") else "device=..."
            warnings.append(
                f"--gpus {raw} reads as device={ids} plus a count of {req.count}, as Docker reads "
                f"it; to select a list of devices quote it: --gpus '\"{quoted}\"'")
    for g in selected:
        if g.mig_enabled:
            warnings.append(f"GPU {g.index} ({g.name}) has MIG enabled: the container sees its MIG "
                            "devices; select one with --gpus device=MIG-<uuid>")
    return warnings


def _binds(options: RunOptions) -> tuple[list[str], dict[str, Any]]:
    """Binds (named volumes for /models and /data unless -v names those targets) and the
    anonymous volumes (``Config.Volumes``)."""
    targets = {v.target for v in options.volumes}
    binds = [f"{options.name}-{t[1:]}:{t}" for t in ("/models", "/data") if t not in targets]
    binds += [v.bind for v in options.volumes if v.source]
    anonymous: dict[str, Any] = {v.target: {} for v in options.volumes if not v.source}
    return binds, anonymous


def _env(options: RunOptions, gpu: bool) -> list[str]:
    user_keys = {e.partition("=")[0] for e in options.env}
    defaults = [f"DEVICE={'cuda' if gpu else 'cpu'}"]
    return [d for d in defaults if d.partition("=")[0] not in user_keys] + list(options.env)


def _create_body(options: RunOptions, image: str, device_requests: list[dict[str, Any]] | None
                 ) -> dict[str, Any]:
    publish = options.publish or tuple(
        parse_publish(f"127.0.0.1:{CONTAINER_PORT}:{CONTAINER_PORT}"))
    exposed, bindings = port_maps(publish)
    binds, anonymous = _binds(options)
    body: dict[str, Any] = {
        "Image": image,
        "User": APP_USER,
        "Env": _env(options, device_requests is not None),
        "Labels": {**options.labels, LABEL_MANAGED: "true", LABEL_NAME: options.name},
        "ExposedPorts": exposed,
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
        },
    }
    if anonymous:
        body["Volumes"] = anonymous
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    body["Labels"][LABEL_PLAN] = digest
    return body


TagFn = Callable[..., str]


def _default_tag(root: Path, dockerfile: str, build_args: Mapping[str, str],
                 wheelhouse: Path | None) -> str:
    from launcher._build import image_tag

    return image_tag(root, dockerfile, build_args, wheelhouse=wheelhouse)


def make_plan(options: RunOptions, probe: Probe | None, *, root: Path = ROOT,
              tag: TagFn = _default_tag, cpu_fallback: str | None = None) -> Plan:
    """Options + probe (None: ``--no-probe``) → :class:`Plan`.

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
    elif options.gpus:
        selected = _selected(probe.gpus, options.gpus) if probe is not None else []
        try:
            choice = choose_cuda(
                cuda_table(),
                probe.driver_version if probe else None,
                probe.cuda_driver_version if probe else None,
                [GpuNeed(g.name, g.compute_capability) for g in selected],
                build.cuda,
            )
        except NoCudaFits as exc:
            raise LauncherError(exc.explanation, hint=exc.hint) from None
        warnings += _gpu_warnings(options, selected)
    if build.cuda is not None and choice is None:
        warnings.append(f"--cuda {format_version(build.cuda)} ignored: this is a CPU plan")
    dockerfile, base, build_args = build_inputs(choice, build)
    image = build.tag or tag(root, dockerfile, build_args, build.wheelhouse)
    if choice is not None:
        explanation = choice.explanation
        if probe is None:
            explanation = "not probed (--no-probe); " + explanation
        if build.base_image:
            explanation += f"; --base-image {build.base_image} replaces {choice.image}"
    else:
        explanation = f"CPU image from {base}" + (" (no GPU found)" if options.gpus else "")
    requests = [r.to_api() for r in options.gpus] if choice is not None else None
    return Plan(
        name=options.name, image=image, dockerfile=dockerfile, base_image=base,
        build_args=build_args, wheelhouse=build.wheelhouse, no_cache=build.no_cache,
        gpu=choice is not None, cuda=choice, explanation=explanation,
        create=_create_body(options, image, requests), warnings=tuple(warnings),
    )
