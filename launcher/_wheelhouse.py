"""The offline wheelhouse: which Python the image runs, and the `pip download` that fills a host
directory with the locked wheels for it (only what is missing).

The pure parts (parsing the probe, building pip's argument lists, picking the torch wheel) are
table-tested; :func:`fill_wheelhouse` runs pip through an injected ``run`` function.
"""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from launcher._errors import LauncherError, UsageError

__all__ = [
    "PROBE_COMMAND",
    "PythonTarget",
    "download_args",
    "fill_wheelhouse",
    "index_reachable",
    "offline_check_args",
    "parse_probe",
    "parse_python_version",
    "select_args",
    "select_wheels",
    "torch_wheel_variants",
]

# Run in the base image: its Python when it has one, else what the distribution would install
# (CUDA images carry no Python; the Dockerfile adds the distribution's).
PROBE_COMMAND = (
    "sh", "-c",
    ('if command -v python3 >/dev/null 2>&1; then python3 -c "import platform, sys; '
    "print('python=%d.%d' % sys.version_info[:2]); print('machine=' + platform.machine()); "
    "print('glibc=' + platform.libc_ver()[1])\"; "
    'else . /etc/os-release; echo "os=$ID-$VERSION_ID"; echo "machine=$(uname -m)"; '
    'echo "glibc=$(getconf GNU_LIBC_VERSION | cut -d" " -f2)"; fi'),
)
# The python3 each distribution release installs, for base images without one.
_DISTRO_PYTHON = {
    "ubuntu-20.04": "3.8", "ubuntu-22.04": "3.10", "ubuntu-24.04": "3.12",
    "debian-11": "3.9", "debian-12": "3.11", "debian-13": "3.13",
}
_VERSION = re.compile(r"3\.(\d{1,2})")
_GLIBC = re.compile(r"2\.(\d{1,3})")
# Oldest manylinux glibc: manylinux2014 == manylinux_2_17.
_MIN_GLIBC_MINOR = 17


@dataclass(frozen=True)
class PythonTarget:
    """The interpreter and platform the wheels are for."""

    version: str  # "3.11"
    machine: str  # "x86_64", "aarch64"
    glibc_minor: int  # 36 for glibc 2.36

    @property
    def abi(self) -> str:
        return "cp" + self.version.replace(".", "")

    def platforms(self) -> list[str]:
        """pip's --platform list: every manylinux this glibc runs, newest first."""
        tags = [f"manylinux_2_{m}_{self.machine}"
                for m in range(self.glibc_minor, _MIN_GLIBC_MINOR - 1, -1)]
        return [*tags, f"manylinux2014_{self.machine}", f"linux_{self.machine}"]


def parse_python_version(value: str) -> str:
    """``--python-version``: ``3.X``."""
    if not _VERSION.fullmatch(value):
        raise UsageError(f'invalid argument "{value}" for "--python-version" flag: expected 3.X',
                         "pass the image's python3 version, e.g. --python-version 3.12")
    return value


def parse_probe(output: str, image: str, python_version: str | None = None) -> PythonTarget:
    """The target from :data:`PROBE_COMMAND`'s ``key=value`` lines; an explicit
    ``python_version`` wins over what the image says."""
    facts = dict(line.split("=", 1) for line in output.splitlines() if "=" in line)
    version = python_version or facts.get("python") or _DISTRO_PYTHON.get(facts.get("os", ""))
    if not version:
        raise LauncherError(
            f"cannot tell which Python image {image} runs (probe said: {output.strip()!r})",
            "pass --python-version 3.X",
        )
    machine = facts.get("machine", "")
    if machine not in ("x86_64", "aarch64"):
        raise LauncherError(
            f"image {image} runs on {machine or 'an unknown machine'}, not x86_64 or aarch64",
            "build the wheelhouse on a host of the image's platform",
        )
    glibc = _GLIBC.fullmatch(facts.get("glibc", ""))
    if not glibc:
        raise LauncherError(
            f"image {image} has no glibc (probe said glibc={facts.get('glibc', '')!r})",
            "manylinux wheels need a glibc base image (not Alpine/musl)",
        )
    return PythonTarget(parse_python_version(version), machine, int(glibc[1]))


def _target_args(target: PythonTarget) -> list[str]:
    args = ["--only-binary=:all:", "--python-version", target.version,
            "--implementation", "cp", "--abi", target.abi]
    for platform in target.platforms():
        args += ["--platform", platform]
    return args


def _constraint_args(constraints: Path | None) -> list[str]:
    return [] if constraints is None else ["-c", str(constraints)]


def offline_check_args(lock: Path, dest: Path, target: PythonTarget,
                       requirements: Sequence[str] = (), constraints: Path | None = None
                       ) -> list[str]:
    """`pip download` that succeeds, without any network, iff ``dest`` already holds it all."""
    return ["download", "--no-index", "--find-links", str(dest), "--dest", str(dest),
            *_target_args(target), *_constraint_args(constraints), "-r", str(lock),
            *requirements, "--quiet"]


def download_args(lock: Path, dest: Path, target: PythonTarget,
                  extra_index_urls: Sequence[str] = (),
                  requirements: Sequence[str] = (), constraints: Path | None = None
                  ) -> list[str]:
    """`pip download` of the lock into ``dest`` (pip skips the files already there)."""
    extra: list[str] = []
    for url in extra_index_urls:
        extra += ["--extra-index-url", url]
    return ["download", "--dest", str(dest), "--find-links", str(dest), *extra,
            *_target_args(target), *_constraint_args(constraints), "-r", str(lock),
            *requirements, "--progress-bar", "off"]


def select_args(requirements: Path, wheelhouse: Path, dest: Path, target: PythonTarget,
                constraints: Path) -> list[str]:
    """`pip download`, offline, of exactly the wheels ``requirements`` resolves to (under the
    lock's constraints) from ``wheelhouse`` into ``dest``."""
    return ["download", "--no-index", "--find-links", str(wheelhouse), "--dest", str(dest),
            *_target_args(target), "-c", str(constraints), "-r", str(requirements), "--quiet"]


def torch_wheel_variants(dest: Path) -> set[str]:
    """The local labels of the torch wheels in ``dest`` (``cpu``, ``cu126``; ``""`` for
    PyPI's own build)."""
    variants = set()
    for wheel in dest.glob("torch-*.whl"):
        version = wheel.name.split("-")[1]
        variants.add(version.partition("+")[2])
    return variants


def index_reachable(url: str, timeout: float = 5.0) -> bool:
    """Whether a package index answers at all (air-gapped hosts: it does not)."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/", timeout=timeout):
            return True
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except (OSError, ValueError):
        return False


Runner = Callable[[list[str]], "subprocess.CompletedProcess[str]"]


def _run_pip(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True,
                          timeout=3600, check=False)


def fill_wheelhouse(
    dest: Path,
    lock: Path,
    target: PythonTarget,
    torch_index_url: str | None = None,
    *,
    requirements: Sequence[str] = (),
    run: Runner = _run_pip,
    log: Callable[[str], None] = lambda _: None,
    constraints: Path | None = None,
) -> list[str]:
    """Make ``dest`` hold every wheel of ``lock`` for ``target``; download only when something
    is missing (checked offline first). ``requirements`` narrow the lock, e.g. the GPU image's
    ``torch==2.13.0+cu126``: a variant the index lacks fails here, by name; ``constraints`` hold
    it to another file, e.g. a predictor's requirements (as ``lock``) to requirements.lock.
    Returns the names of the wheels it added."""
    dest.mkdir(parents=True, exist_ok=True)
    if run(offline_check_args(lock, dest, target, requirements, constraints)).returncode == 0:
        log(f"wheelhouse {dest}: complete for Python {target.version} {target.machine}")
        return []
    before = {p.name for p in dest.glob("*.whl")}
    extra = []
    if torch_index_url:
        if index_reachable(torch_index_url):
            extra.append(torch_index_url)
        else:
            log(f"wheelhouse: torch index {torch_index_url} unreachable; using pip's own indexes")
    log(f"wheelhouse {dest}: downloading the locked wheels for Python {target.version} "
        f"{target.machine} (glibc 2.{target.glibc_minor})")
    result = run(download_args(lock, dest, target, extra, requirements, constraints))
    if result.returncode != 0:
        lines = [ln for ln in (result.stderr or result.stdout).splitlines() if ln.strip()]
        raise LauncherError(
            f"filling the wheelhouse {dest} failed: {lines[-1] if lines else 'pip download failed'}",
            "check the network to the package index, or fill the directory on a connected host "
            "(launcher build --wheelhouse DIR there, then copy DIR)",
        )
    added = sorted({p.name for p in dest.glob("*.whl")} - before)
    log(f"wheelhouse {dest}: added {len(added)} wheels")
    return added


def select_wheels(requirements: Path, wheelhouse: Path, dest: Path, target: PythonTarget,
                  constraints: Path, skip: Callable[[str], bool], *, run: Runner = _run_pip
                  ) -> list[Path]:
    """Copy the wheels ``requirements`` needs from ``wheelhouse`` into ``dest`` (offline), minus
    those of projects ``skip`` names (installed in the image already); the ones kept."""
    dest.mkdir(parents=True, exist_ok=True)
    result = run(select_args(requirements, wheelhouse, dest, target, constraints))
    if result.returncode != 0:
        lines = [ln for ln in (result.stderr or result.stdout).splitlines() if ln.strip()]
        raise LauncherError(
            f"the requirements {requirements} do not resolve from the wheelhouse {wheelhouse} "
            f"under requirements.lock: {lines[-1] if lines else 'pip download failed'}",
            "a package that needs another version of what the service pins cannot be added; "
            "pin one that fits requirements.lock",
        )
    kept = []
    for wheel in sorted(dest.glob("*.whl")):
        if skip(wheel.name.split("-", 1)[0]):
            wheel.unlink()
        else:
            kept.append(wheel)
    return kept
