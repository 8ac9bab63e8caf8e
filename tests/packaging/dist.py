"""The project as a user gets it: its sdist and wheel built from a copy of the checkout (an
in-tree build would write build/ and *.egg-info into it), and fresh venvs to install them in."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from launcher._build import CONTEXT_FILES
from tests.conftest import ROOT

# What the sdist is made from: the packages, the project's metadata and the build context the
# wheel carries (MANIFEST.in picks from these; tests, docs and caches are never copied).
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "launcher", "service",
           *CONTEXT_FILES)
# The tools a packager uses, from PyPI as a user gets them (pip's cache keeps it quick).
TOOLS = ("build>=1.2", "twine>=5", "pipx>=1.5")


def run(*argv: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, check=False, env={**os.environ, **(env or {})})


def copy_sources(dest: Path) -> Path:
    """A copy of :data:`SOURCES` from the checkout in ``dest``, without bytecode."""
    dest.mkdir(parents=True)
    for name in SOURCES:
        src, target = ROOT / name, dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, target)
    return dest


def make_venv(path: Path, *requirements: str | Path) -> Path:
    """A fresh venv at ``path`` with ``requirements`` pip-installed; the venv."""
    created = run(sys.executable, "-m", "venv", path)
    assert created.returncode == 0, created.stderr
    if requirements:
        installed = run(path / "bin" / "python", "-m", "pip", "install", "-q",
                        "--disable-pip-version-check", *requirements)
        assert installed.returncode == 0, installed.stdout + installed.stderr
    return path


def clean_env(venv: Path) -> dict[str, str]:
    """Nothing of the checkout's venv leaks in: the venv's bin first, no PYTHONPATH."""
    return {"PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '')}", "PYTHONPATH": "",
            "VIRTUAL_ENV": str(venv)}


@dataclass(frozen=True)
class Dist:
    sdist: Path
    wheel: Path
    tools: Path  # a venv with build, twine and pipx


def build_dist(base: Path) -> Dist:
    """``python -m build`` of a copy of the checkout: the sdist, then the wheel from it."""
    tools = make_venv(base / "tools", *TOOLS)
    source = copy_sources(base / "src")
    built = run(tools / "bin" / "python", "-m", "build", "--outdir", base / "dist", source)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (sdist,) = (base / "dist").glob("*.tar.gz")
    (wheel,) = (base / "dist").glob("*.whl")
    return Dist(sdist, wheel, tools)
