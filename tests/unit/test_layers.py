"""The launcher's layers (STYLE.md): commands (``launcher/cmd_*.py``) sit on the core; the core
never imports a command. Read from the source with ``ast``, so a lazy import counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "launcher"


def _commands_imported(path: Path) -> list[str]:
    """The ``launcher.cmd_*`` modules ``path`` imports, however it spells the import."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("launcher.cmd_")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.startswith("launcher.cmd_"):
                found.append(node.module)
            elif node.module == "launcher":
                found += [f"launcher.{a.name}" for a in node.names if a.name.startswith("cmd_")]
    return found


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
], ids=["import", "from-module", "from-package", "lazy", "core-only"])
def test_the_check_sees_every_spelling(tmp_path: Path, source: str, expected: list[str]) -> None:
    module = tmp_path / "m.py"
    module.write_text(source)
    assert _commands_imported(module) == expected
