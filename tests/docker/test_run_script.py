"""``scripts/run``, the README's main job, against the real engine: ``PORT=N`` publishes the
service on 127.0.0.1:N, and where the base image the launcher chose cannot be pulled it builds
on the stand-in, with its warning. "Cannot be pulled" is a ``docker`` on PATH that refuses
``pull`` (and knows no image outside gpu-launcher/): no registry is asked."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import ROOT, free_port, unique
from tests.docker.conftest import BUILD_TIMEOUT, STANDIN, label_args

pytestmark = [pytest.mark.docker, pytest.mark.slow]

OFFLINE_DOCKER = """#!/usr/bin/env bash
# docker, as on a host where no registry answers and no real base image was ever pulled
case "$1 $2" in
  "pull "*) echo "Error response from daemon: no registry answers (test)" >&2; exit 1 ;;
  "image inspect")
    for a in "${@:3}"; do
      case "$a" in -*|gpu-launcher/*) ;; *) echo "Error: No such image: $a" >&2; exit 1 ;; esac
    done ;;
esac
exec REAL "$@"
"""


def test_run_serves_on_port_and_builds_on_the_stand_in_with_its_warning(
        docker_client: Any, standin_image: str, wheelhouse: Path,
        image_labels: dict[str, str], tmp_path: Path) -> None:
    real = shutil.which("docker")
    assert real is not None
    shim = tmp_path / "bin" / "docker"
    shim.parent.mkdir()
    shim.write_text(OFFLINE_DOCKER.replace("REAL", real))
    shim.chmod(0o755)
    name, port = unique("glt-run"), free_port()
    env = {**os.environ, "PATH": f"{shim.parent}:{os.environ['PATH']}", "PORT": str(port)}
    try:
        result = subprocess.run(["scripts/run", "--name", name, *label_args(image_labels)],
                                cwd=ROOT, env=env, capture_output=True, text=True,
                                timeout=BUILD_TIMEOUT, check=False)
        assert result.returncode == 0, result.stderr[-4000:]
        assert result.stdout == f"http://127.0.0.1:{port}\n"
        warning = [line for line in result.stderr.splitlines() if line.startswith("run: ")]
        assert warning == [
            "run: WARNING: the base image python:3.11-slim cannot be pulled here.",
            f"run: WARNING: building on the STAND-IN {STANDIN} instead: a Debian root fs with",
            ("run: WARNING: python3, NOT python:3.11-slim (no CUDA libraries of its own). Pull "
             "python:3.11-slim and"),
            "run: WARNING: run again for the real image."]
        reply = requests.post(f"http://127.0.0.1:{port}/predict",
                              json={"inputs": [[0.0] * 64]}, timeout=10)
        assert reply.status_code == 200, reply.text
        container = docker_client.api.inspect_container(name)
        assert container["HostConfig"]["PortBindings"]["8000/tcp"] == [
            {"HostIp": "127.0.0.1", "HostPort": str(port)}]
    finally:
        subprocess.run([str(ROOT / ".venv" / "bin" / "launcher"), "down", "--name", name,
                        "--volumes", "-t", "2"], cwd=ROOT, capture_output=True, timeout=120,
                       check=False)
