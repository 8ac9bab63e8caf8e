"""The flags of ``launcher up`` and ``launcher build``: their argparse groups and their parsed
values (:class:`PlanOptions`, :class:`BuildOptions`), every one already what the Engine API takes.

Each value goes through a pure parser (:mod:`launcher._flags`, :mod:`launcher._limits`, :mod:`launcher._gpus`); a bad one
is a :class:`UsageError` (exit 2) that echoes it, with a ``hint:`` for the flag.
:func:`add_build_options` holds the build flags ``launcher up`` shares with ``launcher build``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from launcher._cuda import TORCH_VERSION, cuda_table, format_version, parse_cuda_version
from launcher._errors import UsageError
from launcher._flags import (
    FlagError,
    PortMapping,
    Volume,
    parse_env,
    parse_env_file,
    parse_publish,
    parse_restart,
    parse_timeout,
    parse_volume,
    validate_name,
)
from launcher._gpus import DeviceRequest, GpuSpecError, parse_gpus
from launcher._limits import MIN_MEMORY, Ulimit, parse_bytes, parse_cpus, parse_ulimit
from launcher._model import ModelFile, check_model_file
from launcher._predictor_image import PredictorSource, predictor_source
from launcher._probe import Probe, read_probe_file

__all__ = [
    "CONTAINER_PORT",
    "CPU_BASE_IMAGE",
    "DEFAULT_NAME",
    "STACK_BYTES",
    "STOP_GRACE",
    "BuildOptions",
    "PlanOptions",
    "add_build_options",
    "add_env_and_limits",
    "add_run_options",
    "build_options_from_args",
    "plan_options_from_args",
    "run_defaults",
    "timeout_from_args",
]

DEFAULT_NAME = "gpu-launcher"
CONTAINER_PORT = 8000
CPU_BASE_IMAGE = "python:3.11-slim"
DEFAULT_SHM = "1g"  # PyTorch DataLoader workers share tensors through /dev/shm (docker: 64m)
STACK_BYTES = 64 * 1024 * 1024
# Seconds between SIGTERM and SIGKILL when the launcher stops the service (up replacing it,
# `down -t`); Kubernetes' terminationGracePeriodSeconds is sized from it (launcher/_k8s.py).
STOP_GRACE = 10

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
    "--cuda": "MAJOR.MINOR of a CUDA the torch wheels exist for, e.g. 12.6",
    "--timeout": "how long up waits for the service, in seconds, e.g. --timeout 180",
}


def add_build_options(parser: argparse.ArgumentParser, *, gpu_flag: bool = False) -> None:
    """The image flags of ``launcher build`` and ``launcher up`` (``gpu_flag``: build's --gpu)."""
    group = parser.add_argument_group("image")
    if gpu_flag:
        group.add_argument("--gpu", action="store_true",
                           help="build the CUDA image (Dockerfile.gpu) for this host's GPUs "
                                "(or, with --probe-file, for that host's)")
    group.add_argument("--base-image", metavar="IMAGE",
                       help=f"base image instead of the chosen one (CPU: {CPU_BASE_IMAGE}, "
                            "GPU: the nvidia/cuda runtime image the driver runs)")
    group.add_argument("--wheelhouse", metavar="DIR", type=Path,
                       help="build offline: install Python packages only from DIR's wheels")
    group.add_argument("--tag", metavar="TAG",
                       help="image tag instead of the content hash gpu-launcher/service:KIND-HASH")
    group.add_argument("--no-cache", action="store_true", help="build without the layer cache")
    group.add_argument("--cuda", metavar="X.Y", help="pin the CUDA version of a GPU image")
    probe = group.add_mutually_exclusive_group()
    probe.add_argument("--no-probe", action="store_true",
                       help="do not read GPUs with NVML (remote engine, CI): take --gpus as given")
    probe.add_argument("--probe-file", metavar="FILE", type=Path,
                       help="plan for the host FILE describes (its 'launcher probe --json'), "
                            "not this one: e.g. CI building the image for a GPU server")
    group.add_argument("--verbose", action="store_true",
                       help="also show the builder's own output (pip, apt)")
    own = parser.add_argument_group(
        "your own predictor (an image FROM the service image: requirements, then code)")
    own.add_argument("--predictor", metavar="MODULE:CLASS",
                     help="serve this predictor class (setup/predict; launcher init writes one)")
    own.add_argument("--code", metavar="DIR",
                     help="with --predictor: the directory holding its module (the code layer)")
    own.add_argument("--requirements", metavar="FILE",
                     help="with --predictor: pip requirements installed in their own layer "
                          "(offline from --wheelhouse; never replacing the image's torch)")
    own.add_argument("--service-image", metavar="IMAGE",
                     help="with --predictor: build FROM this service image instead of the one "
                          "planned (and built when missing) here")


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
    add_env_and_limits(group)
    group.add_argument("--ulimit", action="append", default=[], metavar="NAME=SOFT[:HARD]",
                       help="set a ulimit, -1 for unlimited; replaces the default for that name "
                            f"(memlock=-1, stack={STACK_BYTES})")
    group.add_argument("--restart", default="unless-stopped", metavar="POLICY",
                       help="restart policy (unless-stopped)")
    group.add_argument("-l", "--label", action="append", default=[], metavar="KEY=VALUE",
                       help="add a label to the container (and the volumes and image up makes)")
    group.add_argument("--model", metavar="FILE",
                       help="serve this TorchScript (.pt) or torch.export (.pt2) file with the "
                            "stock image, no rebuild: mounted read-only, MODEL_PATH set")


def add_env_and_limits(group: argparse._ArgumentGroup) -> None:
    """The container's environment and resource flags, which ``render k8s`` shares with ``up``."""
    group.add_argument("-e", "--env", action="append", default=[], metavar="KEY[=VALUE]",
                       help="set an environment variable (KEY alone: this shell's value)")
    group.add_argument("--env-file", action="append", default=[], metavar="FILE",
                       help="read KEY=VALUE lines from FILE (before -e)")
    group.add_argument("-m", "--memory", metavar="BYTES", help="memory limit, e.g. 8g")
    group.add_argument("--cpus", metavar="N", help="CPU limit, e.g. 2.5")
    group.add_argument("--shm-size", default=DEFAULT_SHM, metavar="BYTES",
                       help=f"size of /dev/shm ({DEFAULT_SHM})")


def run_defaults() -> dict[str, Any]:
    """What :func:`add_run_options` gives the flags nobody passed: for commands that plan as
    ``up`` does (``push``, ``render``) without offering all of ``up``'s flags."""
    parser = argparse.ArgumentParser(add_help=False)
    add_run_options(parser)
    add_build_options(parser)
    return vars(parser.parse_args([]))


@dataclass(frozen=True)
class BuildOptions:
    base_image: str | None = None
    wheelhouse: Path | None = None
    tag: str | None = None
    no_cache: bool = False
    cuda: tuple[int, int] | None = None
    no_probe: bool = False
    probe_file: Path | None = None  # --probe-file: another host's `launcher probe --json`
    probed: Probe | None = None  # ... read (a bad file is a usage error before anything runs)
    verbose: bool = False  # the builder's own output on stderr (a failed build's hint names it)
    predictor: PredictorSource | None = None  # --predictor/--code/--requirements
    service_image: str | None = None  # --service-image: FROM this, not the planned image


@dataclass(frozen=True)
class PlanOptions:
    """``up``'s flags, parsed: what the plan is made from (the container and its image), every
    value already what the Engine API takes. How ``up`` executes the plan is
    :class:`launcher._up.UpPolicy`."""

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
    model: ModelFile | None = None  # --model FILE


def _flag(flag: str, value: str, parse: Callable[[str], Any]) -> Any:
    try:
        return parse(value)
    except (FlagError, GpuSpecError, ValueError) as exc:
        raise UsageError(f'invalid argument "{value}" for "{flag}" flag: {exc}',
                         hint=_FLAG_HINTS.get(flag), flag=flag, value=value) from None


def timeout_from_args(value: str) -> float:
    """``up --timeout``'s seconds; a bad value → :class:`UsageError` echoing it (exit 2)."""
    return float(_flag("--timeout", value, parse_timeout))


def build_options_from_args(args: argparse.Namespace, cwd: str | None = None) -> BuildOptions:
    """Parse the image flags; paths (--code, --requirements) are taken from ``cwd`` (default:
    this process's)."""
    wheelhouse = args.wheelhouse
    if wheelhouse is not None and wheelhouse.exists() and not wheelhouse.is_dir():
        raise UsageError(f"--wheelhouse {wheelhouse}: not a directory",
                         hint="pass a folder: a missing one is created and filled with the "
                              "locked wheels", flag="--wheelhouse", value=str(wheelhouse))
    cuda = _flag("--cuda", args.cuda, parse_cuda_version) if args.cuda is not None else None
    known = [v.cuda for v in cuda_table().variants]
    if cuda is not None and cuda not in known:
        raise UsageError(
            f'invalid argument "{args.cuda}" for "--cuda" flag: '
            f"torch {TORCH_VERSION} has no wheels for CUDA {format_version(cuda)}",
            hint="pick one of " + ", ".join(format_version(v) for v in known),
            flag="--cuda", value=args.cuda)
    predictor = predictor_source(args.predictor, args.code, args.requirements,
                                 cwd or os.getcwd())
    if args.service_image and predictor is None:
        raise UsageError("--service-image needs --predictor MODULE:CLASS",
                         hint="drop --service-image, or add --predictor and --code")
    return BuildOptions(
        predictor=predictor,
        service_image=args.service_image or None,
        base_image=args.base_image or None,
        wheelhouse=wheelhouse,
        tag=args.tag or None,
        no_cache=bool(args.no_cache),
        cuda=cuda,
        no_probe=bool(args.no_probe),
        probe_file=args.probe_file,
        probed=read_probe_file(args.probe_file) if args.probe_file is not None else None,
        verbose=bool(args.verbose),
    )


def _read_env_file(path: str, environ: Mapping[str, str]) -> list[str]:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f'invalid argument "{path}" for "--env-file" flag: {exc.strerror}',
                         hint=_FLAG_HINTS["--env-file"], flag="--env-file", value=path) from None
    return _flag("--env-file", path, lambda p: parse_env_file(data, p, environ))  # type: ignore[no-any-return]


def _model(args: argparse.Namespace, env: list[str], cwd: str, remote: bool) -> ModelFile | None:
    if args.model is None:
        return None
    if args.predictor is not None:
        raise UsageError("--model and --predictor both say what to serve",
                         hint="pass one: --model FILE (the stock image) or --predictor with "
                              "--code DIR")
    if any(e.partition("=")[0] == "MODEL_PATH" for e in env):
        raise UsageError("--model sets MODEL_PATH; it is also given with --env or --env-file",
                         hint="drop MODEL_PATH from --env / --env-file")
    return check_model_file(args.model, cwd, in_volume=remote)


def plan_options_from_args(args: argparse.Namespace, environ: Mapping[str, str],
                          cwd: str, remote: bool = False) -> PlanOptions:
    """Parse ``up``'s raw flag strings; a bad value → :class:`UsageError` echoing it (exit 2).
    ``remote``: the engine is on another machine (``--model`` is copied, not mounted)."""
    if args.require_gpu and not args.gpus:
        raise UsageError("--require-gpu needs --gpus", hint="add --gpus all")
    memory = _flag("--memory", args.memory, parse_bytes) if args.memory else 0
    if 0 < memory < MIN_MEMORY:
        raise UsageError(f'invalid argument "{args.memory}" for "--memory" flag: '
                         "Minimum memory limit allowed is 6MB", hint=_FLAG_HINTS["--memory"],
                         flag="--memory", value=args.memory)
    env: list[str] = []
    for path in args.env_file:
        env += _read_env_file(path, environ)
    env += [_flag("--env", e, lambda v: parse_env(v, environ)) for e in args.env]
    keys = {e.partition("=")[0] for e in env}
    if environ.get("API_TOKEN") and not keys & {"API_TOKEN", "API_TOKEN_FILE"}:
        env.append(f"API_TOKEN={environ['API_TOKEN']}")  # as compose passes ${API_TOKEN}
    return PlanOptions(
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
        build=build_options_from_args(args, cwd),
        labels=dict(label.partition("=")[::2] for label in args.label),
        model=_model(args, env, cwd, remote),
    )
