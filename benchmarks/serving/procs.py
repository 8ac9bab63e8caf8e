"""The server processes the serving benchmarks start: a loopback port, readiness, and stopping
the process's own session (it and its children) by its PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request

__all__ = ["free_port", "stop_session", "wait_ready"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(proc: subprocess.Popen[bytes], url: str, timeout: float = 120.0) -> None:
    """Poll ``url`` until it answers 200; RuntimeError if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"not ready within {timeout:.0f}s")


def stop_session(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the session of ``proc`` (started with start_new_session=True), then SIGKILL.
    A session with nothing left in it (the server exited, as ``wait_ready`` reports) is done."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    except ProcessLookupError:
        proc.wait(10)
