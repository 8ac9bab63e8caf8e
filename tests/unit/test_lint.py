"""The code stays typed and linted: mypy --strict (pyproject's [tool.mypy]) and ruff, as tests so
CI holds every commit to them. Also the one-module rule for hardware and daemons: the Docker SDK
(the engine), pynvml (GPUs) and torch (inference) are each imported in exactly one product module;
everything else is pure data and functions, tested without them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.imports import imported_modules

ROOT = Path(__file__).resolve().parents[2]


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, check=False,
                          text=True, timeout=300)


def test_mypy_strict_is_clean() -> None:
    result = _run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_is_clean() -> None:
    result = _run("ruff", "check", "launcher", "service", "tests")
    assert result.returncode == 0, result.stdout + result.stderr


# Each of these is imported by exactly one product module (the rule above).
ONE_MODULE = [
    ("docker", "launcher/_engine.py"),
    ("pynvml", "service/nvml.py"),
    ("torch", "service/_torch.py"),
]


def _imports(path: Path, its_package: str, package: str) -> bool:
    """``path`` (a module of ``its_package``) imports ``package`` or one of its modules."""
    return any(m == package or m.startswith(f"{package}.")
               for m in imported_modules(path, its_package))


@pytest.mark.parametrize("package, owner", ONE_MODULE, ids=[p for p, _ in ONE_MODULE])
def test_hardware_and_daemons_are_imported_in_one_module(package: str, owner: str) -> None:
    importers = sorted(
        str(path.relative_to(ROOT))
        for folder in ("launcher", "service")
        for path in (ROOT / folder).rglob("*.py")
        if _imports(path, ".".join(path.relative_to(ROOT).parent.parts), package)
    )
    assert importers == [owner]


@pytest.mark.parametrize(("source", "expected"), [
    ("import docker", True), ("import os, docker", True), ("import docker.errors", True),
    ("from docker import errors", True), ("def f():\n    import docker\n", True),
    ("import dockerfile", False), ("from . import docker_names", False),
    ("from launcher import _engine", False),
], ids=["import", "several-on-a-line", "submodule", "from", "lazy", "prefix-only", "relative",
        "another-package"])
def test_the_one_module_check_sees_every_spelling(tmp_path: Path, source: str,
                                                  expected: bool) -> None:
    module = tmp_path / "m.py"
    module.write_text(source)
    assert _imports(module, "launcher", "docker") is expected
