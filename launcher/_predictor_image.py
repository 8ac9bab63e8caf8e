"""``--predictor module:Class --code DIR [--requirements FILE]``, pure: a derived image FROM the
service image, its Dockerfile, its build context and its content-hash tag.

Layers, in order of how often they change: the requirements (keyed on the file and the wheels
it resolves to, installed offline from the wheelhouse like the base image), then ``DIR``, then
``PREDICTOR``. The tag hashes the service image's tag, ``DIR``'s files and the requirements,
so an unchanged project is not rebuilt and a code edit rebuilds only the code layer.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from launcher._build import (
    IMAGE_REPO,
    ContextFile,
    file_digest,
    hash_args_and_labels,
    is_ignored,
    parse_dockerignore,
)
from launcher._cuda import TORCH_VERSION
from launcher._errors import UsageError

__all__ = [
    "CODE_DIR",
    "DOCKERFILE",
    "WHEELS_MOUNT",
    "PredictorBuild",
    "PredictorSource",
    "code_files",
    "locked_names",
    "predictor_dockerfile",
    "predictor_source",
    "predictor_tag",
    "requirement_names",
    "wheels_dir",
    "write_predictor_context",
]

CODE_DIR = "/code"  # where DIR lands in the image (first on PYTHONPATH)
DOCKERFILE = "Dockerfile"
_WHEELS = "predictor/wheels"  # in the context: only the wheels the requirements need
WHEELS_MOUNT = "/tmp/predictor/wheels"  # where the Dockerfile copies them
_REFERENCE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")  # as the service's PREDICTOR setting
_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
# Never part of the code layer: VCS, caches, virtualenvs (DIR/.dockerignore adds its own).
_ALWAYS_IGNORED = (".git", ".hg", "**/__pycache__", "**/*.py[cod]", ".venv", "venv",
                   "**/.mypy_cache", "**/.pytest_cache", "**/.ruff_cache", "**/*.egg-info")
_HINT_PREDICTOR = "--predictor MODULE:CLASS names a class in a module of --code DIR"
_HINT_TORCH = (f"torch {TORCH_VERSION} is in the service image already (requirements.lock): "
               "drop the torch line from --requirements FILE, or its version (a bare 'torch' "
               "is satisfied by the image's)")


@dataclass(frozen=True)
class PredictorSource:
    """A user's predictor: ``module:Class`` in ``code``, with the packages of ``requirements``."""

    predictor: str
    code: Path  # absolute
    requirements: Path | None = None  # absolute
    requirements_text: str = ""


@dataclass(frozen=True)
class PredictorBuild:
    """The derived image a plan runs: ``source`` on top of ``service_image``."""

    source: PredictorSource
    service_image: str  # FROM this (the plan's service image, or --service-image)
    tag: str
    build_args: Mapping[str, str] = field(default_factory=dict)
    wheelhouse: Path | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    no_cache: bool = False
    given_service_image: bool = False  # --service-image: used as it is, never built here
    explicit_tag: bool = False  # --tag named it; otherwise the content hash

    @classmethod
    def plan(cls, source: PredictorSource, service_image: str, *, tag: str | None = None,
             wheelhouse: Path | None = None, labels: Mapping[str, str] | None = None,
             no_cache: bool = False, given_service_image: bool = False) -> PredictorBuild:
        args = {"SERVICE_IMAGE": service_image}
        if wheelhouse is not None:
            args |= {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": WHEELS_MOUNT}
        labels = dict(labels or {})
        return cls(source, service_image,
                   tag or predictor_tag(service_image, source, args, labels), args, wheelhouse,
                   labels, no_cache, given_service_image, tag is not None)

    def on(self, service_image: str) -> PredictorBuild:
        """The same predictor on another service image (a new content-hash tag with it)."""
        if service_image == self.service_image:
            return self
        args = {**self.build_args, "SERVICE_IMAGE": service_image}
        tag = self.tag if self.explicit_tag else predictor_tag(service_image, self.source, args,
                                                                self.labels)
        return replace(self, service_image=service_image, tag=tag, build_args=args)

    def to_json(self) -> dict[str, object]:
        return {"predictor": self.source.predictor, "code": str(self.source.code),
                "requirements": str(self.source.requirements) if self.source.requirements
                else None, "service_image": self.service_image, "tag": self.tag}


def normalize(name: str) -> str:
    """A project name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(text: str, source: str) -> list[str]:
    """The project names a requirements file lists. Lines that need files outside it (``-r``,
    ``-c``, ``-e``, paths) and a torch that would replace the image's are a
    :class:`UsageError` naming the line."""
    names = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        where = f'--requirements {source}, line {number}: "{line}"'
        if line.startswith(("-r", "-c", "-e", "--requirement", "--constraint", "--editable")):
            raise UsageError(f"{where}: only package lines are supported, no nested files",
                             hint="list the packages themselves in --requirements FILE")
        if line.startswith("-"):
            continue  # an option such as --extra-index-url: pip reads it
        match = _NAME.match(line)
        if match is None or line.startswith((".", "/")):
            raise UsageError(f"{where}: not a package requirement",
                             hint="one package per line, e.g. scikit-learn==1.5.2")
        name = normalize(match[0])
        rest = line[match.end():].split(";", 1)[0].strip()
        rest = re.sub(r"^\[[^\]]*\]", "", rest).strip()
        if name == "torch" and rest not in ("", f"=={TORCH_VERSION}"):
            raise UsageError(f"{where}: would replace the service image's torch "
                             f"{TORCH_VERSION}", hint=_HINT_TORCH)
        names.append(name)
    return names


def locked_names(lock_text: str) -> set[str]:
    """The projects requirements.lock pins (installed in the service image already)."""
    return {normalize(m[0]) for line in lock_text.splitlines()
            if (m := _NAME.match(line.strip())) and not line.startswith("#")}


def _module_file(code: Path, module: str) -> Path | None:
    base = code.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def predictor_source(predictor: str | None, code: str | None, requirements: str | None,
                     cwd: str) -> PredictorSource | None:
    """The three flags checked together (None: no ``--predictor``): the reference well-formed,
    ``DIR`` a directory holding its module, ``FILE`` readable and acceptable."""
    if predictor is None:
        if code is not None or requirements is not None:
            flag = "--code" if code is not None else "--requirements"
            raise UsageError(f"{flag} needs --predictor MODULE:CLASS",
                             hint="add --predictor, e.g. --predictor predict:Predictor")
        return None
    if not _REFERENCE.fullmatch(predictor):
        raise UsageError(f'invalid argument "{predictor}" for "--predictor" flag: '
                         "expected MODULE:CLASS", hint=_HINT_PREDICTOR, flag="--predictor",
                         value=predictor)
    if code is None:
        raise UsageError(f"--predictor {predictor} needs --code DIR (the directory with its "
                         "module)", hint="add --code DIR, the directory with the module "
                                         "(launcher init DIR writes a starter)")
    directory = Path(cwd, code).resolve()
    if not directory.is_dir():
        raise UsageError(f'invalid argument "{code}" for "--code" flag: not a directory',
                         hint="pass the directory that holds the predictor's module",
                         flag="--code", value=code)
    module = predictor.partition(":")[0]
    if _module_file(directory, module) is None:
        wanted = module.replace(".", "/")
        raise UsageError(f"--predictor {predictor}: no {wanted}.py (or {wanted}/__init__.py) "
                         f"in --code {code}", hint=_HINT_PREDICTOR)
    if requirements is None:
        return PredictorSource(predictor, directory)
    path = Path(cwd, requirements).resolve()
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or str(exc)
        raise UsageError(f'invalid argument "{requirements}" for "--requirements" flag: {why}',
                         hint="pass a pip requirements file: one package per line",
                         flag="--requirements", value=requirements) from None
    requirement_names(text, requirements)
    return PredictorSource(predictor, directory, path, text)


def code_files(code: Path) -> list[ContextFile]:
    """``DIR``'s files as they land in :data:`CODE_DIR`, sorted; caches, VCS and what
    ``DIR/.dockerignore`` names left out."""
    text = "\n".join(_ALWAYS_IGNORED)
    ignore_file = code / ".dockerignore"
    if ignore_file.is_file():
        text += "\n" + ignore_file.read_text()
    patterns = parse_dockerignore(text)
    files = []
    for path in sorted(code.rglob("*")):
        rel = path.relative_to(code).as_posix()
        if (path.is_file() or path.is_symlink()) and not is_ignored(rel, patterns):
            files.append(ContextFile(f"predictor/code/{rel}", path))
    return files


def predictor_dockerfile(predictor: str) -> str:
    """FROM the service image: requirements (own layer), then the code, then ``PREDICTOR``."""
    return f"""\
# Generated by launcher: the service image plus a predictor's requirements and code.
ARG SERVICE_IMAGE
FROM ${{SERVICE_IMAGE}}
# Offline (launcher --wheelhouse): 1 and /tmp/predictor/wheels, as for the service image.
ARG PIP_NO_INDEX
ARG PIP_FIND_LINKS
USER 0
# Keyed on the requirements and their wheels only: a code edit reuses this layer. The lock is
# a constraint, so nothing the service pins (torch above all) is replaced.
COPY requirements.lock predictor/requirements.txt /tmp/predictor/
COPY {_WHEELS}/ {WHEELS_MOUNT}/
RUN if grep -Eqv '^[[:space:]]*(#|$)' /tmp/predictor/requirements.txt; then \\
        /opt/venv/bin/pip install --no-cache-dir --find-links {WHEELS_MOUNT} \\
            -c /tmp/predictor/requirements.lock -r /tmp/predictor/requirements.txt; \\
    fi && rm -rf /tmp/predictor
COPY predictor/code/ {CODE_DIR}/
# Bytecode now: the running container's root file system is read-only.
RUN /opt/venv/bin/python -m compileall -q {CODE_DIR}
USER 10001:10001
ENV PYTHONPATH={CODE_DIR}:/app \\
    PREDICTOR={predictor}
"""


def predictor_tag(base_tag: str, source: PredictorSource, build_args: Mapping[str, str],
                  labels: Mapping[str, str] | None = None) -> str:
    """``gpu-launcher/service:predictor-<12 hex>``: the service image's tag (itself a content
    hash), the generated Dockerfile, the requirements, every file of ``DIR``, the build args
    and labels."""
    h = hashlib.sha256()
    for part in ("base", base_tag, "dockerfile", predictor_dockerfile(source.predictor),
                 "requirements", source.requirements_text):
        h.update(f"{part}\0".encode())
    for f in code_files(source.code):
        h.update(f"file\0{f.arcname}\0{file_digest(f)}\0".encode())
    hash_args_and_labels(h.update, build_args, labels)
    return f"{IMAGE_REPO}:predictor-{h.hexdigest()[:12]}"


def wheels_dir(context: Path) -> Path:
    """Where the requirements' wheels go in a derived image's context directory."""
    return context / _WHEELS


def write_predictor_context(source: PredictorSource, lock: Path, wheels: Iterable[Path],
                            dest: Path) -> None:
    """The derived image's build context, written into the directory ``dest``: the Dockerfile,
    the lock (as constraints), the requirements, their ``wheels`` and ``DIR``'s files."""
    (dest / _WHEELS).mkdir(parents=True, exist_ok=True)
    (dest / DOCKERFILE).write_text(predictor_dockerfile(source.predictor))
    shutil.copy2(lock, dest / "requirements.lock")
    (dest / "predictor" / "requirements.txt").write_text(source.requirements_text)
    (dest / _WHEELS / ".keep").write_text("")  # COPY needs the folder even with no wheels
    for wheel in wheels:
        if wheel.parent != dest / _WHEELS:
            shutil.copy2(wheel, dest / _WHEELS / wheel.name)
    for f in code_files(source.code):
        target = dest / f.arcname
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f.source, target)
