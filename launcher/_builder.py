"""The build service: a :class:`~launcher._build.BuildSpec` run against the engine, the
offline wheelhouse filled for the base image's Python first (probed once per image id). Both
``launcher build`` and ``launcher up`` build through here.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launcher._build import (
    BuildProgress,
    BuildSpec,
    BuildStep,
    context_files,
    failed_step_output,
    write_context_tar,
)
from launcher._cuda import TORCH_VERSION, cuda_table
from launcher._engine import EngineAPI
from launcher._engine_errors import BuildFailed, NotFound
from launcher._errors import LauncherError, UsageError
from launcher._predictor_image import (
    DOCKERFILE,
    PredictorBuild,
    locked_names,
    normalize,
    requirement_names,
    wheels_dir,
    write_predictor_context,
)
from launcher._wheelhouse import (
    PROBE_COMMAND,
    fill_wheelhouse,
    parse_probe,
    select_wheels,
    torch_wheel_variants,
)

__all__ = [
    "BuildResult",
    "build_image",
    "build_predictor_image",
    "check_context",
    "prepare_wheelhouse",
    "probe_base",
    "service_image_id",
]

def service_image_id(engine: EngineAPI, tag: str) -> str:
    """A ``--service-image``'s id: it is only looked up, never built here."""
    image_id = engine.image_id(tag)
    if image_id is None:
        raise NotFound(f"--service-image {tag} is not on the engine",
                       hint="build one (launcher build) or pull it, or drop --service-image to "
                            "build the planned one")
    return image_id


# The stand-in base image scripts/standin-images makes (never under a real image's name).
STANDIN_IMAGE = "gpu-launcher/standin-bookworm:latest"


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


def check_context(spec: BuildSpec) -> None:
    """The build context has the spec's Dockerfile and the lock (a usage error otherwise)."""
    for name in (spec.dockerfile, "requirements.lock"):
        if not (spec.context / name).is_file():
            raise UsageError(f"no {name} in the build context {spec.context}",
                             "run from the project root, or pass --context DIR")


def probe_base(engine: EngineAPI, image: str, cache_dir: Path) -> str:
    """The base image's :data:`PROBE_COMMAND` output, kept in ``cache_dir`` per image id (a
    container start costs seconds on every build)."""
    image_id = engine.image_id(image)
    if image_id is None:
        raise LauncherError(
            f"base image {image} is not here, and --wheelhouse needs to ask its Python",
            f"docker pull {image}; where no registry answers, build on the stand-in: "
            f"scripts/standin-images, then --base-image {STANDIN_IMAGE}")
    cache = cache_dir / f".probe-{image_id.rpartition(':')[2][:16]}"
    if cache.is_file():
        return cache.read_text()
    output = engine.run_once(image, PROBE_COMMAND)
    cache.write_text(output)
    return output


def prepare_wheelhouse(engine: EngineAPI, spec: BuildSpec, log: Callable[[str], None]) -> None:
    """Fill ``spec.wheelhouse`` for the base image's Python (probed by running it briefly)."""
    assert spec.wheelhouse is not None
    spec.wheelhouse.mkdir(parents=True, exist_ok=True)
    probe = probe_base(engine, spec.base_image, spec.wheelhouse)
    target = parse_probe(probe, spec.base_image, spec.python_version)
    index = spec.build_args.get("TORCH_INDEX_URL", cuda_table().cpu_index_url)
    # The GPU image installs torch by its local version: fetch exactly that build.
    variant = spec.build_args.get("TORCH_VARIANT")
    pins = [f"torch=={TORCH_VERSION}+{variant}"] if variant else []
    fill_wheelhouse(spec.wheelhouse, spec.context / "requirements.lock", target, index,
                    requirements=pins, log=log)
    if spec.dockerfile.endswith(".gpu") and torch_wheel_variants(spec.wheelhouse) <= {"cpu"}:
        log(f"warning: the wheelhouse {spec.wheelhouse} holds only a CPU torch wheel; "
            "the GPU image will run torch on the CPU")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def build_image(engine: EngineAPI, spec: BuildSpec,
                log: Callable[[str], None] = _stderr,
                clock: Callable[[], float] = time.monotonic) -> BuildResult:
    """Build the image ``spec`` describes (filling its wheelhouse first), or find it up to date."""
    check_context(spec)
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
            step = progress.fail()
            if step is not None and step.instruction.startswith("FROM "):
                raise _unpullable(spec, exc) from None
            output = "" if spec.verbose else failed_step_output(exc.log)
            if output:  # --verbose showed it as it came
                sys.stderr.write(output)
            raise
    steps = progress.finish()
    cached = sum(s.cached for s in steps)
    log(f"built {spec.tag} in {clock() - started:.1f}s ({cached}/{len(steps)} steps cached)")
    return BuildResult(spec.tag, image_id, built=True, steps=tuple(steps))


def _unpullable(spec: BuildSpec, exc: BuildFailed) -> BuildFailed:
    """A FROM step failed: its image is not on the engine, and the engine could not pull it."""
    hint = ("pull it where a registry answers, or name an image that is on the engine with "
            "--base-image (docker images lists them); offline, add --wheelhouse DIR for the "
            "Python packages")
    return BuildFailed(f"building {spec.tag}: the base image {spec.base_image} is not on the "
                       f"engine and cannot be pulled: {exc.detail or exc.message}", hint,
                       exc.log, detail=exc.detail)


def build_predictor_image(engine: EngineAPI, predictor: PredictorBuild, lock: Path,
                          log: Callable[[str], None] = _stderr,
                          clock: Callable[[], float] = time.monotonic,
                          verbose: bool = False) -> BuildResult:
    """Build the derived image FROM ``predictor.service_image``. Offline (a wheelhouse), the
    wheelhouse is filled for the requirements first (under ``lock``, for the service image's
    Python), and only the wheels they need, minus what the image has, go into the context."""
    source = predictor.source
    with tempfile.TemporaryDirectory(prefix="launcher-predictor-") as tmp:
        context = Path(tmp, "context")
        context.mkdir()
        wheels: list[Path] = []
        where = str(source.requirements)
        if predictor.wheelhouse is not None and requirement_names(source.requirements_text,
                                                                  where):
            wheelhouse = predictor.wheelhouse
            wheelhouse.mkdir(parents=True, exist_ok=True)
            image = predictor.service_image
            target = parse_probe(probe_base(engine, image, wheelhouse), image)
            requirements = Path(tmp, "requirements.txt")
            requirements.write_text(source.requirements_text)
            fill_wheelhouse(wheelhouse, requirements, target, log=log, constraints=lock)
            locked = locked_names(lock.read_text())
            wheels = select_wheels(requirements, wheelhouse, wheels_dir(context), target, lock,
                                   lambda name: normalize(name) in locked)
            log(f"predictor: {len(wheels)} wheel(s) for {where} from {wheelhouse}")
        write_predictor_context(source, lock, wheels, context)
        spec = BuildSpec(dockerfile=DOCKERFILE, base_image=predictor.service_image,
                         build_args=predictor.build_args, tag=predictor.tag, context=context,
                         no_cache=predictor.no_cache, labels=predictor.labels, verbose=verbose)
        return build_image(engine, spec, log=log, clock=clock)
