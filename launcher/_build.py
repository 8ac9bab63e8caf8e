"""The build context, pure: which files `.dockerignore` lets through, the tar the engine gets,
the content-hash tag of the build inputs, and the engine's build output read as progress.

The launcher sends its own tar (the SDK's ``custom_context``), so the files it hashes for the
tag are exactly the files the engine sees; an offline build adds the host wheelhouse under
``wheelhouse/`` in that tar instead of copying wheels into the working tree.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tarfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

__all__ = [
    "CONTEXT_FILES",
    "IMAGE_REPO",
    "PACKAGED_CONTEXT",
    "ROOT",
    "WHEELHOUSE_DIR",
    "BuildProgress",
    "BuildSpec",
    "BuildStep",
    "ContextFile",
    "IgnorePattern",
    "context_files",
    "failed_step_output",
    "file_digest",
    "hash_args_and_labels",
    "image_tag",
    "is_ignored",
    "parse_build_output",
    "parse_dockerignore",
    "parse_image_ref",
    "sha256_file",
    "write_context_tar",
]

IMAGE_REPO = "gpu-launcher/service"
# A checkout's root, or the site-packages an installed launcher (and its service) is in.
_TOP = Path(__file__).resolve().parent.parent
# What a build reads besides service/: a wheel carries these in PACKAGED_CONTEXT (setup.py
# copies them there) and its service/ is the installed package next to launcher/.
CONTEXT_FILES = ("Dockerfile", "Dockerfile.gpu", ".dockerignore", "requirements.lock",
                 "wheelhouse/README.md")
PACKAGED_CONTEXT = Path(__file__).resolve().parent / "data" / "context"
# The service's build context: a checkout's root, else the one the wheel carries. Both send
# the engine the same files, so they name (and reuse) the same content-hash image.
ROOT = _TOP if (_TOP / "Dockerfile").is_file() else PACKAGED_CONTEXT
# The in-context wheelhouse the Dockerfiles copy from (``PIP_FIND_LINKS=/wheelhouse``).
WHEELHOUSE_DIR = "wheelhouse"
_HASH_LEN = 12


@dataclass(frozen=True)
class BuildSpec:
    """One image build: what :func:`launcher._plan.make_plan` (or ``launcher build``) decided,
    plus where and how; :func:`launcher._builder.build_image` runs it."""

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


@dataclass(frozen=True)
class IgnorePattern:
    """One `.dockerignore` line: a path pattern, ``exclusion`` for a ``!`` line."""

    pattern: str
    exclusion: bool
    regex: re.Pattern[str]


def _clean(pattern: str) -> str:
    # What Go's filepath.Clean does to the patterns the engine's CLI reads.
    parts: list[str] = []
    for part in pattern.split("/"):
        if part in ("", "."):
            continue
        if part == ".." and parts and parts[-1] != "..":
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts) or "."


def _compile(pattern: str) -> re.Pattern[str]:
    """Docker's pattern syntax: ``*`` and ``?`` stop at ``/``, ``**`` spans directories."""
    out, i, n = [], 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if pattern.startswith("**", i):
                i += 2
                if pattern.startswith("/", i):
                    out.append("(?:.*/)?")
                    i += 1
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(ch))
            else:
                # Go's filepath.Match classes: ``[^...]`` negates, as in Python.
                out.append("[" + pattern[i + 1 : end].replace("\\", "\\\\") + "]")
                i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out) + r"\Z")


def parse_dockerignore(text: str) -> list[IgnorePattern]:
    """The patterns of a `.dockerignore` file, in order; comments and blank lines dropped."""
    patterns: list[IgnorePattern] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclusion = line.startswith("!")
        if exclusion:
            line = line[1:].strip()
        cleaned = _clean(line.lstrip("/") or "/")
        patterns.append(IgnorePattern(cleaned, exclusion, _compile(cleaned)))
    return patterns


def is_ignored(relpath: str, patterns: Iterable[IgnorePattern]) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern matching a parent dir counts."""
    parts = relpath.split("/")
    ignored = False
    for p in patterns:
        if p.exclusion != ignored:
            continue
        match = bool(p.regex.match(relpath)) or any(
            p.regex.match("/".join(parts[:i])) for i in range(1, len(parts))
        )
        if match:
            ignored = not p.exclusion
    return ignored


def _may_reinclude(rel_dir: str, patterns: Iterable[IgnorePattern]) -> bool:
    for p in patterns:
        if p.exclusion:
            literal = re.split(r"[*?\[\\]", p.pattern, maxsplit=1)[0]
            if literal.startswith(rel_dir + "/") or (rel_dir + "/").startswith(literal):
                return True
    return False


# The distribution reference grammar (docker/distribution reference/regexp.go), tag included.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*(?::[\w][\w.-]{{0,127}})?")
_DOMAIN = re.compile(r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
                     r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])"
                     r"(?::[0-9]+)?")


def parse_image_ref(value: str) -> str:
    """An image name with an optional tag, as ``docker build -t`` takes it; ValueError with
    Docker's words otherwise. The first part is a registry only when it looks like a host (has
    a ``.`` or ``:``, or is ``localhost``), as Docker decides."""
    first, slash, rest = value.partition("/")
    is_domain = bool(slash) and ("." in first or ":" in first or first == "localhost")
    path = rest if is_domain else value
    if len(path.partition(":")[0]) > 255:
        raise ValueError("invalid reference format: repository name must not be more than 255 "
                         "characters")
    if is_domain and not _DOMAIN.fullmatch(first):
        raise ValueError("invalid reference format")
    if not _PATH.fullmatch(path):
        if _PATH.fullmatch(path.lower()):
            raise ValueError("invalid reference format: repository name must be lowercase")
        raise ValueError("invalid reference format")
    return value


@dataclass(frozen=True)
class ContextFile:
    """A file of the build context: its path in the tar and where its bytes come from."""

    arcname: str
    source: Path


def context_files(root: Path, dockerfile: str, wheelhouse: Path | None = None) -> list[ContextFile]:
    """The files the engine gets, sorted: ``root`` after `.dockerignore` (the Dockerfile and
    `.dockerignore` always, as the docker CLI does), plus the ``*.whl`` of ``wheelhouse`` as
    ``wheelhouse/NAME`` when an offline build brings its own."""
    ignore_file = root / ".dockerignore"
    patterns = parse_dockerignore(ignore_file.read_text()) if ignore_file.is_file() else []
    always = {dockerfile, ".dockerignore"}
    files: dict[str, Path] = {}
    for top, tree in _trees(root):
        for dirpath, dirnames, filenames in os.walk(tree):
            base = Path(dirpath)
            rel_dir = base.relative_to(tree).as_posix()
            prefix = top if rel_dir == "." else top + rel_dir + "/"
            # Skip ignored trees (.git, .venv) unless a `!` line may take something back.
            dirnames[:] = sorted(
                d for d in dirnames
                if not (is_ignored(prefix + d, patterns)
                        and not _may_reinclude(prefix + d, patterns))
            )
            for name in filenames:
                rel = prefix + name
                if rel in always or not is_ignored(rel, patterns):
                    files[rel] = base / name
    if wheelhouse is not None:
        for wheel in wheelhouse.glob("*.whl"):
            files[f"{WHEELHOUSE_DIR}/{wheel.name}"] = wheel
    return [ContextFile(name, files[name]) for name in sorted(files)]


def _trees(root: Path) -> list[tuple[str, Path]]:
    """The folders a context's files come from, each with its place in the context: ``root``;
    the wheel's :data:`PACKAGED_CONTEXT` adds the installed ``service`` package as service/
    (one copy of it in the wheel, not two)."""
    if root == PACKAGED_CONTEXT:
        return [("", root), ("service/", _TOP / "service")]
    return [("", root)]


def file_digest(f: ContextFile) -> str:
    """What an image tag hashes of one context file: its mode bit and bytes (a link: its
    target; a wheelhouse wheel: its size, its name pins the rest)."""
    st = f.source.lstat()
    if stat.S_ISLNK(st.st_mode):
        return "link:" + str(f.source.readlink())
    executable = "x" if st.st_mode & 0o111 else "-"
    if f.arcname.startswith(WHEELHOUSE_DIR + "/") and f.arcname.endswith(".whl"):
        # A wheel's file name pins project, version and tags; hashing 1 GB of CUDA wheels on
        # every `launcher up` would cost more than it protects.
        return f"wheel:{executable}:{st.st_size}"
    return f"{executable}:{sha256_file(f.source)}"


def sha256_file(path: Path) -> str:
    """The sha256 of a file's bytes, in hex, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def image_tag(
    root: Path,
    dockerfile: str,
    build_args: Mapping[str, str],
    *,
    wheelhouse: Path | None = None,
    labels: Mapping[str, str] | None = None,
) -> str:
    """``gpu-launcher/service:cpu-<12 hex>`` (``gpu-`` for ``Dockerfile.gpu``): a hash of the
    Dockerfile, every file the context sends, the build args and extra labels, so unchanged
    inputs name an image that already exists and the build can be skipped."""
    variant = "gpu" if dockerfile.endswith(".gpu") else "cpu"
    h = hashlib.sha256()
    h.update(f"dockerfile\0{dockerfile}\0".encode())
    for f in context_files(root, dockerfile, wheelhouse):
        h.update(f"file\0{f.arcname}\0{file_digest(f)}\0".encode())
    hash_args_and_labels(h.update, build_args, labels)
    return f"{IMAGE_REPO}:{variant}-{h.hexdigest()[:_HASH_LEN]}"


def hash_args_and_labels(update: Callable[[bytes], object], build_args: Mapping[str, str],
                         labels: Mapping[str, str] | None) -> None:
    """Feed an image tag's hash (``update``: its ``.update``) the build args and labels, sorted
    by key so their order never changes the tag."""
    for key in sorted(build_args):
        update(f"arg\0{key}\0{build_args[key]}\0".encode())
    for key in sorted(labels or {}):
        update(f"label\0{key}\0{(labels or {})[key]}\0".encode())


def write_context_tar(files: Iterable[ContextFile], fileobj: IO[bytes]) -> None:
    """The context as an uncompressed tar with fixed owners and times, so equal inputs give the
    engine equal bytes and its layer cache hits."""
    with tarfile.open(fileobj=fileobj, mode="w|") as tar:
        for f in files:
            info = tar.gettarinfo(str(f.source), arcname=f.arcname)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            info.mode = 0o755 if info.mode & 0o111 else 0o644
            if info.isreg():
                with f.source.open("rb") as fh:
                    tar.addfile(info, fh)
            else:
                tar.addfile(info)


@dataclass(frozen=True)
class BuildStep:
    """One Dockerfile instruction as the (legacy) builder reported it."""

    number: int
    total: int
    instruction: str
    cached: bool


_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_SHOWN = 72


class BuildProgress:
    """Turns the engine's build stream into one stderr line per finished step, saying whether
    its layer came from the cache, plus a line when a long step (RUN) starts running."""

    def __init__(self, write: Callable[[str], None], clock: Callable[[], float]) -> None:
        self._write = write
        self._clock = clock
        self._buffer = ""
        self._current: tuple[int, int, str] | None = None
        self._cached = False
        self._started = 0.0
        self.steps: list[BuildStep] = []

    def feed(self, chunk: str) -> None:
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split("\n")
        for line in lines:
            self._line(line.strip())

    def finish(self) -> list[BuildStep]:
        self._flush()
        self._end_step()
        return self.steps

    def fail(self) -> BuildStep | None:
        """The build failed: the step it was in is reported failed, not done, and returned."""
        self._flush()
        if self._current is None:
            return None
        step = BuildStep(*self._current, cached=False)
        self._write(f"{self._label()}: failed")
        self._current = None
        return step

    def _flush(self) -> None:
        if self._buffer:
            self._line(self._buffer.strip())
            self._buffer = ""

    def _label(self) -> str:
        assert self._current is not None
        number, total, instruction = self._current
        short = instruction if len(instruction) <= _SHOWN else instruction[: _SHOWN - 3] + "..."
        return f"step {number}/{total} {short}"

    def _line(self, line: str) -> None:
        m = _STEP.match(line)
        if m:
            self._end_step()
            self._current, self._cached = (int(m[1]), int(m[2]), m[3]), False
            self._started = self._clock()
        elif self._current is not None and line == "---> Using cache":
            self._cached = True
        elif (self._current is not None and line.startswith("---> Running in")
              and self._current[2].startswith("RUN ")):
            self._write(f"{self._label()}: running")

    def _end_step(self) -> None:
        if self._current is None:
            return
        number, total, instruction = self._current
        self.steps.append(BuildStep(number, total, instruction, self._cached))
        took = self._clock() - self._started
        self._write(f"{self._label()}: {'cached' if self._cached else f'done in {took:.1f}s'}")
        self._current = None


def failed_step_output(log: str) -> str:
    """The engine's output of the step a build failed in: what follows its last ``Step N/M``
    line, without the builder's own markers (those lines are the launcher's to show)."""
    lines = log.splitlines(keepends=True)
    start = max((i + 1 for i, line in enumerate(lines) if _STEP.match(line.strip())), default=0)
    return "".join(line for line in lines[start:] if not line.strip().startswith("--->"))


def parse_build_output(lines: Iterable[str]) -> list[BuildStep]:
    """Steps from the engine's build stream: ``Step N/M : INSTR`` then ``---> Using cache``
    when the layer came from the cache."""
    progress = BuildProgress(lambda _: None, lambda: 0.0)
    for chunk in lines:
        progress.feed(chunk)
    return progress.finish()
