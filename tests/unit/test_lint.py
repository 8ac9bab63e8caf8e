"""The code stays typed and linted: mypy --strict (pyproject's [tool.mypy]) and ruff, as tests so
CI holds every commit to them. Also the one-module rule for hardware and daemons: the Docker SDK
(the engine), pynvml (GPUs) and torch (inference) are each imported in exactly one product module;
everything else is pure data and functions, tested without them."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.mark.parametrize("package, owner", ONE_MODULE, ids=[p for p, _ in ONE_MODULE])
def test_hardware_and_daemons_are_imported_in_one_module(package: str, owner: str) -> None:
    pattern = re.compile(rf"^\s*(import {package}\b|from {package}(\.| import))", re.MULTILINE)
    importers = sorted(
        str(path.relative_to(ROOT))
        for folder in ("launcher", "service")
        for path in (ROOT / folder).rglob("*.py")
        if pattern.search(path.read_text())
    )
    assert importers == [owner]
