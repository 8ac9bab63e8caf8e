"""The modules a source file imports, read with ``ast`` (tests/unit's layer and one-module rules):
every spelling counts, lazy (inside a function), several per line and relative ones too."""

from __future__ import annotations

import ast
from pathlib import Path


def imported_modules(path: Path, package: str) -> list[str]:
    """Each module ``path`` (a module of ``package``) imports, by its full name, once, in order.
    ``from M import a`` gives ``M`` and ``M.a`` (``a`` may be a submodule); a relative import is
    resolved against ``package``."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base_parts = parts[:len(parts) - node.level + 1] if node.level else []
            base = ".".join(base_parts + ([node.module] if node.module else []))
            found += [base] + [f"{base}.{alias.name}" for alias in node.names]
    return list(dict.fromkeys(found))
