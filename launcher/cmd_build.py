"""``launcher build``: build the service image (CPU, or CUDA with ``--gpu``) through the engine,
with a progress line per step on stderr and the image tag on stdout.

The default tag is a hash of the build inputs (:func:`launcher._build.image_tag`), so when the
inputs are unchanged and the image exists, nothing is built.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from launcher._build import BuildSpec, image_tag, parse_image_ref
from launcher._builder import (
    BuildResult,
    build_image,
    build_predictor_image,
    check_context,
    prepare_wheelhouse,
    service_image_id,
)
from launcher._cuda import format_version
from launcher._engine import EngineAPI, connect
from launcher._errors import EXIT_OK, LauncherError, UsageError
from launcher._options import add_build_options, build_options_from_args
from launcher._plan import ROOT, build_inputs, cuda_choice, service_tag
from launcher._predictor_image import PredictorBuild
from launcher._probe import probe_host
from launcher._wheelhouse import parse_python_version
from service.nvml import load_nvml

__all__ = ["add_parser", "parse_label", "run"]


def _log(line: str) -> None:
    print(f"launcher: {line}", file=sys.stderr)


def parse_label(value: str) -> tuple[str, str]:
    """``--label KEY=VALUE`` (a bare KEY means an empty value, as in docker build)."""
    key, _, val = value.partition("=")
    if not key or key != key.strip():
        raise UsageError(f'invalid argument "{value}" for "--label" flag: expected KEY=VALUE',
                         "e.g. --label org.example.team=ml")
    return key, val


def _flag(flag: str, value: str, parse: Callable[[str], str]) -> str:
    try:
        return parse(value)
    except ValueError as exc:
        raise UsageError(f'invalid argument "{value}" for "{flag}" flag: {exc}',
                         "e.g. gpu-launcher/service:dev or registry.example:5000/team/svc:1.2"
                         ) from None


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
    choice, probe = None, build.probed
    if args.gpu or build.probed is not None:
        # The CUDA image and torch wheel chosen as ``launcher up`` chooses them: for this
        # host's GPUs, the host --probe-file describes (--gpu implied), or none (--no-probe).
        if probe is not None and not probe.gpus:
            raise LauncherError(f"--probe-file {build.probe_file}: the host has no GPUs "
                                f"({probe.reason or 'it lists no GPUs'})",
                                hint="build the CPU image: drop --gpu and --probe-file")
        if probe is None and not build.no_probe:
            probe = probe_host(load)
        choice = cuda_choice(probe, probe.gpus if probe else (), build.cuda, build.probe_file)
        if probe is None or probe.driver_version is None:  # an unknown host: as up says it
            why = "--no-probe" if probe is None else "no NVIDIA driver here"
            choice = replace(choice, explanation=f"not probed ({why}); {choice.explanation}")
    dockerfile, base, build_args = build_inputs(choice, build)
    if choice is not None:
        _log(choice.explanation)
        if probe is not None and not probe.gpus:
            _log(f"warning: --gpu: no GPU found ({probe.reason or 'NVML sees no GPUs'}); the "
                 "CUDA image is the default for an unknown driver: pin one with --cuda, or "
                 "build for the target host with --probe-file")
    elif build.cuda is not None:
        _log(f"warning: --cuda {format_version(build.cuda)} ignored: this is a CPU image "
             "(add --gpu)")
    labels = dict(args.label)
    predictor = build.predictor
    named = service_tag(build)  # None: the content hash, known once the inputs are
    spec = BuildSpec(dockerfile=dockerfile, base_image=base, build_args=build_args,
                     tag=named or "", context=args.context, wheelhouse=build.wheelhouse,
                     no_cache=build.no_cache, labels=labels, python_version=args.python_version,
                     skip_if_exists=named is None, verbose=build.verbose)
    check_context(spec)  # before the engine: a usage error needs no daemon
    engine = connect()
    try:
        if build.service_image is not None:
            tag = build.service_image
            result = BuildResult(tag, service_image_id(engine, tag), built=False)
        else:
            if spec.wheelhouse is not None:
                # Fill first: the content-hash tag covers the wheels the build will get. The
                # build args stand: the fill pins the torch build they name (torch==X+variant).
                prepare_wheelhouse(engine, spec, _log)
            tag = named or image_tag(args.context, dockerfile, build_args,
                                     wheelhouse=build.wheelhouse, labels=labels)
            result = build_image(engine, replace(spec, tag=tag, wheelhouse_ready=True), log=_log)
        if predictor is not None:
            result = _predictor_image(engine, PredictorBuild.plan(
                predictor, result.tag, tag=build.tag, wheelhouse=build.wheelhouse, labels=labels,
                no_cache=build.no_cache, given_service_image=build.service_image is not None),
                args.context, build.verbose)
    finally:
        engine.close()
    print(json.dumps(result.to_json(), indent=2) if args.json else result.tag)
    return EXIT_OK


def _predictor_image(engine: EngineAPI, predictor: PredictorBuild, context: Path,
                     verbose: bool) -> BuildResult:
    """The derived image: found by its content-hash tag, or built FROM the service image."""
    existing = engine.image_id(predictor.tag)
    if existing and not predictor.explicit_tag and not predictor.no_cache:
        _log(f"image {predictor.tag} is up to date (same predictor, code and requirements); "
             "not building")
        return BuildResult(predictor.tag, existing, built=False)
    return build_predictor_image(engine, predictor, context / "requirements.lock", log=_log,
                                 verbose=verbose)
