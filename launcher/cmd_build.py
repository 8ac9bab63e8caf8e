"""``launcher build``: build the service image (CPU, or CUDA with ``--gpu``) through the engine,
with a progress line per step on stderr and the image tag on stdout.

The default tag is a hash of the build inputs (:func:`launcher._build.image_tag`), so when the
inputs are unchanged and the image exists, nothing is built.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from launcher._build import (
    BuildProgress,
    BuildStep,
    context_files,
    image_tag,
    parse_image_ref,
    write_context_tar,
)
from launcher._cuda import CudaChoice, GpuNeed, NoCudaFits, choose_cuda, cuda_table
from launcher._engine import Engine
from launcher._engine_errors import BuildFailed
from launcher._errors import EXIT_OK, LauncherError, UsageError
from launcher._options import BuildOptions, add_build_options, build_options_from_args
from launcher._plan import ROOT, Plan, build_inputs
from launcher._probe import probe_host
from launcher._wheelhouse import (
    PROBE_COMMAND,
    fill_wheelhouse,
    parse_probe,
    parse_python_version,
    torch_wheel_variants,
)
from service.nvml import load_nvml

__all__ = [
    "BuildResult",
    "BuildSpec",
    "add_parser",
    "build_image",
    "parse_label",
    "prepare_wheelhouse",
    "run",
    "spec_from_plan",
]

# The torch index the wheelhouse fill asks when the build args name none (the CPU Dockerfile's).
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"


@dataclass(frozen=True)
class BuildSpec:
    """One image build: what :func:`launcher._plan.make_plan` decided, plus where and how."""

    dockerfile: str
    base_image: str
    build_args: Mapping[str, str]
    tag: str
    context: Path = ROOT
    wheelhouse: Path | None = None
    no_cache: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    python_version: str | None = None  # the base image's, when it cannot be probed
    skip_if_exists: bool = False  # True for content-hash tags: same inputs, same image
    wheelhouse_ready: bool = False  # filled already (the tag hashes the filled wheelhouse)
    verbose: bool = False


def spec_from_plan(plan: Plan, context: Path = ROOT) -> BuildSpec:
    """The build ``launcher up`` runs for a plan whose image is missing (or with --build)."""
    return BuildSpec(dockerfile=plan.dockerfile, base_image=plan.base_image,
                     build_args=plan.build_args, tag=plan.image, context=context,
                     wheelhouse=plan.wheelhouse, no_cache=plan.no_cache)


@dataclass(frozen=True)
class BuildResult:
    tag: str
    image_id: str
    built: bool  # False: an image with this content-hash tag already existed
    steps: tuple[BuildStep, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "tag": self.tag, "id": self.image_id, "built": self.built,
            "steps": [{"step": s.number, "instruction": s.instruction, "cached": s.cached}
                      for s in self.steps],
        }


def parse_label(value: str) -> tuple[str, str]:
    """``--label KEY=VALUE`` (a bare KEY means an empty value, as in docker build)."""
    key, _, val = value.partition("=")
    if not key or key != key.strip():
        raise UsageError(f'invalid argument "{value}" for "--label" flag: expected KEY=VALUE',
                         "e.g. --label org.example.team=ml")
    return key, val


def _check_context(spec: BuildSpec) -> None:
    for name in (spec.dockerfile, "requirements.lock"):
        if not (spec.context / name).is_file():
            raise UsageError(f"no {name} in the build context {spec.context}",
                             "run from the project root, or pass --context DIR")


def _probe_base(engine: Engine, image: str, cache_dir: Path) -> str:
    """The base image's :data:`PROBE_COMMAND` output, kept in ``cache_dir`` per image id (a
    container start costs seconds on every build)."""
    image_id = engine.image_id(image)
    if image_id is None:
        raise LauncherError(
            f"base image {image} is not here, and --wheelhouse needs to ask its Python",
            f"docker pull {image}, or where no registry answers: scripts/standin-images {image}")
    cache = cache_dir / f".probe-{image_id.rpartition(':')[2][:16]}"
    if cache.is_file():
        return cache.read_text()
    output = engine.run_once(image, PROBE_COMMAND)
    cache.write_text(output)
    return output


def prepare_wheelhouse(engine: Engine, spec: BuildSpec, log: Callable[[str], None]) -> None:
    """Fill ``spec.wheelhouse`` for the base image's Python (probed by running it briefly)."""
    assert spec.wheelhouse is not None
    spec.wheelhouse.mkdir(parents=True, exist_ok=True)
    probe = _probe_base(engine, spec.base_image, spec.wheelhouse)
    target = parse_probe(probe, spec.base_image, spec.python_version)
    index = spec.build_args.get("TORCH_INDEX_URL", CPU_TORCH_INDEX)
    fill_wheelhouse(spec.wheelhouse, spec.context / "requirements.lock", target, index, log=log)
    if spec.dockerfile.endswith(".gpu") and torch_wheel_variants(spec.wheelhouse) <= {"cpu"}:
        log(f"warning: the wheelhouse {spec.wheelhouse} holds only a CPU torch wheel; "
            "the GPU image will run torch on the CPU")


def _flag(flag: str, value: str, parse: Callable[[str], str]) -> str:
    try:
        return parse(value)
    except ValueError as exc:
        raise UsageError(f'invalid argument "{value}" for "{flag}" flag: {exc}',
                         "e.g. gpu-launcher/service:dev or registry.example:5000/team/svc:1.2"
                         ) from None


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def build_image(engine: Engine, spec: BuildSpec,
                log: Callable[[str], None] = _stderr,
                clock: Callable[[], float] = time.monotonic) -> BuildResult:
    """Build the image ``spec`` describes (filling its wheelhouse first), or find it up to date."""
    _check_context(spec)
    if spec.wheelhouse is not None and not spec.wheelhouse_ready:
        prepare_wheelhouse(engine, spec, log)
    if spec.skip_if_exists and not spec.no_cache:
        existing = engine.image_id(spec.tag)
        if existing:
            log(f"image {spec.tag} is up to date (same build inputs); not building")
            return BuildResult(spec.tag, existing, built=False)
    log(f"building {spec.tag} from {spec.dockerfile} on {spec.base_image}"
        + (f", offline from {spec.wheelhouse}" if spec.wheelhouse is not None else ""))
    progress = BuildProgress(log, clock)

    def on_output(text: str) -> None:
        if spec.verbose:
            sys.stderr.write(text)
        progress.feed(text)

    started = clock()
    files = context_files(spec.context, spec.dockerfile, spec.wheelhouse)
    with tempfile.TemporaryFile() as context:
        write_context_tar(files, context)
        context.seek(0)
        try:
            image_id = engine.build(context, dockerfile=spec.dockerfile, tag=spec.tag,
                                    build_args=spec.build_args, labels=spec.labels,
                                    no_cache=spec.no_cache, on_output=on_output)
        except BuildFailed as exc:
            progress.finish()
            if not spec.verbose and exc.log:
                sys.stderr.write(exc.log)
            raise
    steps = progress.finish()
    cached = sum(s.cached for s in steps)
    log(f"built {spec.tag} in {clock() - started:.1f}s ({cached}/{len(steps)} steps cached)")
    return BuildResult(spec.tag, image_id, built=True, steps=tuple(steps))


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "build", help="build the service image",
        description="Build the service image through the Docker engine: progress on stderr, "
                    "the tag on stdout. The default tag hashes the build inputs, so an "
                    "unchanged image is not rebuilt.")
    add_build_options(parser, gpu_flag=True)
    group = parser.add_argument_group("build")
    group.add_argument("--python-version", metavar="X.Y", type=parse_python_version,
                       help="the base image's Python for --wheelhouse, when it has none to probe")
    group.add_argument("--context", metavar="DIR", type=Path, default=ROOT,
                       help="the build context (default: this checkout)")
    group.add_argument("--label", metavar="KEY=VALUE", action="append", default=[],
                       type=parse_label, help="add a label to the image (repeatable)")
    group.add_argument("--json", action="store_true",
                       help="print the result (tag, id, built, steps) as JSON on stdout")
    parser.set_defaults(func=run)


def _cuda_choice(build: BuildOptions, load: Callable[[], Any]) -> CudaChoice:
    """The CUDA image and torch index for ``--gpu``, chosen as ``launcher up`` chooses them."""
    probe = None if build.no_probe else probe_host(load)
    gpus = [GpuNeed(g.name, g.compute_capability) for g in (probe.gpus if probe else ())]
    try:
        return choose_cuda(cuda_table(), probe.driver_version if probe else None,
                           probe.cuda_driver_version if probe else None, gpus, build.cuda)
    except NoCudaFits as exc:
        raise LauncherError(exc.explanation, hint=exc.hint) from None


def run(args: argparse.Namespace, load: Callable[[], Any] = load_nvml) -> int:
    if args.tag is not None:
        _flag("--tag", args.tag, parse_image_ref)
    if args.wheelhouse is not None:
        # --wheelhouse DIR fills DIR: it need not exist yet.
        try:
            args.wheelhouse.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f'invalid argument "{args.wheelhouse}" for "--wheelhouse" flag: '
                             f"{exc.strerror}", "pass a directory (it is made when missing)"
                             ) from None
    build = build_options_from_args(args)
    choice = _cuda_choice(build, load) if args.gpu else None
    dockerfile, base, build_args = build_inputs(choice, build)
    if choice is not None:
        print(f"launcher: {choice.explanation}", file=sys.stderr)
    labels = dict(args.label)
    spec = BuildSpec(dockerfile=dockerfile, base_image=base, build_args=build_args,
                     tag=build.tag or "", context=args.context, wheelhouse=build.wheelhouse,
                     no_cache=build.no_cache, labels=labels, python_version=args.python_version,
                     skip_if_exists=build.tag is None, verbose=build.verbose)
    _check_context(spec)  # before the engine: a usage error needs no daemon
    engine = Engine.connect()
    try:
        if spec.wheelhouse is not None:
            # Fill first: the content-hash tag covers the wheels the build will get.
            prepare_wheelhouse(engine, spec, _stderr)
        tag = build.tag or image_tag(args.context, dockerfile, build_args,
                                     wheelhouse=build.wheelhouse, labels=labels)
        result = build_image(engine, replace(spec, tag=tag, wheelhouse_ready=True))
    finally:
        engine.close()
    print(json.dumps(result.to_json(), indent=2) if args.json else result.tag)
    return EXIT_OK
