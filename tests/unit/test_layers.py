"""The launcher's layers (STYLE.md): commands (``launcher/cmd_*.py``) sit on the core; the core
never imports a command. Read from the source with ``ast``, so a lazy import counts too."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.imports import imported_modules

PACKAGE = ROOT / "launcher"
_COMMAND = re.compile(r"launcher\.cmd_\w+")


def _commands_imported(path: Path) -> list[str]:
    """The ``launcher.cmd_*`` modules ``path`` (a module of ``launcher``) imports, however it
    spells the import."""
    return [m for m in imported_modules(path, "launcher") if _COMMAND.fullmatch(m)]


CORE = sorted(p for p in PACKAGE.glob("*.py")
              if not p.name.startswith("cmd_") and p.name != "_cli.py")


@pytest.mark.parametrize("path", CORE, ids=[p.name for p in CORE])
def test_the_core_imports_no_command(path: Path) -> None:
    assert _commands_imported(path) == []


@pytest.mark.parametrize(("source", "expected"), [
    ("import launcher.cmd_up", ["launcher.cmd_up"]),
    ("from launcher.cmd_build import run", ["launcher.cmd_build"]),
    ("from launcher import _plan, cmd_status", ["launcher.cmd_status"]),
    ("def f():\n    from launcher.cmd_build import build_image\n", ["launcher.cmd_build"]),
    ("from launcher._plan import make_plan\nimport launcher._up", []),
    ("from .cmd_up import run", ["launcher.cmd_up"]),
    ("from . import _plan, cmd_down", ["launcher.cmd_down"]),
    ("import os, launcher.cmd_logs", ["launcher.cmd_logs"]),
], ids=["import", "from-module", "from-package", "lazy", "core-only", "relative-module",
        "relative-package", "several-on-a-line"])
def test_the_check_sees_every_spelling(tmp_path: Path, source: str, expected: list[str]) -> None:
    module = tmp_path / "m.py"
    module.write_text(source)
    assert _commands_imported(module) == expected
