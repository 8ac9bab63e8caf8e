"""What launcher remembers about an engine between runs: a small JSON file per engine ID under
the user's cache dir (``$XDG_CACHE_HOME/gpu-launcher``, default ``~/.cache/gpu-launcher``).

Today that is the memlock limit an engine could not raise: learning it costs a refused
container start, so it is learned once, not paid on every ``up``. It is a cache, never a
source of truth: an entry older than :data:`RECHECK_SECONDS`, or one learned under another
hard limit of this shell, is asked again; a file that cannot be read or written is ignored.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RECHECK_SECONDS", "EngineMemory", "cache_dir"]

# After a day the engine is asked again: its operator may have raised its limit meanwhile.
RECHECK_SECONDS = 24 * 3600
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def cache_dir(environ: Mapping[str, str]) -> Path:
    """Where launcher keeps what it learned, as the XDG base directory spec says."""
    base = environ.get("XDG_CACHE_HOME") or os.path.join(
        environ.get("HOME") or os.path.expanduser("~"), ".cache")
    return Path(base) / "gpu-launcher"


@dataclass(frozen=True)
class EngineMemory:
    """The facts learned about the engine whose ``docker info`` ID is ``engine_id``."""

    folder: Path
    engine_id: str
    clock: Callable[[], float] = time.time

    @property
    def path(self) -> Path:
        return self.folder / f"engine-{_UNSAFE.sub('_', self.engine_id)}.json"

    def memlock_limit(self, shell_limit: int) -> int | None:
        """The hard memlock limit the engine allowed, learned while this shell's own limit was
        ``shell_limit``, within the last day; None when unknown (ask the engine)."""
        try:
            entry = json.loads(self.path.read_text())["memlock"]
            limit, shell, learned = int(entry["limit"]), int(entry["shell_limit"]), entry["at"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if shell != shell_limit or not 0 <= self.clock() - float(learned) < RECHECK_SECONDS:
            return None
        return limit

    def remember_memlock(self, limit: int, shell_limit: int) -> None:
        entry = {"limit": limit, "shell_limit": shell_limit, "at": self.clock()}
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_suffix(f".{os.getpid()}.tmp")
            partial.write_text(json.dumps({"memlock": entry}) + "\n")
            partial.replace(self.path)  # atomic: a concurrent `up` reads the old or the new
        except OSError:
            pass  # a cache that cannot be written costs the next `up` one refused start

    def forget_memlock(self) -> None:
        try:
            self.path.unlink()
        except OSError:
            pass
