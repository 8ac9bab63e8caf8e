"""Running ``launcher`` as a user does: a real ``python -m launcher`` process from the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def run_launcher(*argv: str, timeout: float = 60, env: dict[str, str] | None = None,
                 cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """``python -m launcher ARGV`` from the checkout, run in ``cwd`` (default: the checkout),
    with this environment plus ``env``."""
    return subprocess.run([sys.executable, "-m", "launcher", *argv], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, check=False,
                          env={**os.environ, **(env or {})})


def assert_fails(result: subprocess.CompletedProcess[str], code: int, stderr: list[str]) -> None:
    """A refused run: exit CODE, nothing on stdout (it carries only data), exactly STDERR's lines."""
    assert (result.returncode, result.stdout) == (code, ""), result.stderr
    assert result.stderr.splitlines() == stderr


def has_nvml() -> bool:
    """Whether this host's NVML loads (then there is no CPU fallback to test)."""
    from service.nvml import NvmlUnavailable, load_nvml

    try:
        load_nvml()
    except NvmlUnavailable:
        return False
    return True
