"""No set-up script ever puts a stand-in under a real registry name (python:3.11-slim,
nvidia/cuda:..., prom/prometheus:...): a poisoned name would outlive the outage that made it.

The scripts run for real, against a `docker` on PATH that records every name they give an image
(import, build -t, tag) and answers as an engine with no images and no registry would; the
stand-in's root fs is a stub, so no debootstrap runs.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

# A docker CLI for an engine with no images and no registry: `image inspect` finds only what
# this shim made (or the test seeded), `pull` fails, import/build/tag record the name they
# create; `image inspect -f ...` answers the stand-in label for the names in $SHIM_STANDINS.
DOCKER_SHIM = r"""#!/usr/bin/env bash
echo "$*" >> "$SHIM_LOG"
made() { grep -qxF -- "$1" "$SHIM_MADE" 2>/dev/null; }
case "$1" in
  image) [ "$2" = inspect ] || exit 1
         if [ "$3" = -f ]; then
           made "$5" || exit 1
           grep -qxF -- "$5" "$SHIM_STANDINS" 2>/dev/null && echo true || echo "<no value>"
           exit 0
         fi
         made "$3" && exit 0; exit 1 ;;
  pull) echo "Error response from daemon: no registry here" >&2; exit 1 ;;
  import) cat >/dev/null; echo "${@: -1}" >> "$SHIM_MADE"; echo sha256:0 ;;
  build) prev=""; for a in "$@"; do [ "$prev" = -t ] && echo "$a" >> "$SHIM_MADE"; prev=$a; done ;;
  tag) echo "$3" >> "$SHIM_MADE" ;;
  *) exit 0 ;;
esac
"""


@pytest.fixture
def no_registry(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "docker"
    shim.write_text(DOCKER_SHIM)
    shim.chmod(0o755)
    rootfs = tmp_path / "rootfs"
    (rootfs / "usr/bin").mkdir(parents=True)
    (rootfs / "usr/bin/python3").write_text("#!/bin/sh\n")
    (rootfs / "usr/bin/python3").chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "SHIM_LOG": str(tmp_path / "log"), "SHIM_MADE": str(tmp_path / "made"),
            "SHIM_STANDINS": str(tmp_path / "standins"), "STANDIN_ROOTFS": str(rootfs)}


def _run(script: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ROOT / "scripts" / script), *args], env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def _made(env: dict[str, str]) -> list[str]:
    path = Path(env["SHIM_MADE"])
    return path.read_text().split() if path.exists() else []


def test_setup_scripts_make_stand_ins_only_under_their_own_names(
        no_registry: dict[str, str]) -> None:
    base = _run("standin-images", env=no_registry)
    assert base.returncode == 0, base.stderr
    assert base.stdout == "gpu-launcher/standin-bookworm:latest\n"
    third = _run("standin-third-party", env=no_registry)
    assert third.returncode == 0, third.stderr
    assert third.stdout == "PROMETHEUS_IMAGE=gpu-launcher/standin-prometheus:v3.7.3\n"
    made = _made(no_registry)
    # both stand-ins were really made (the check below is not vacuous) ...
    assert made == ["gpu-launcher/standin-bookworm:latest",
                    "gpu-launcher/standin-prometheus:v3.7.3"]
    # ... and nothing else: no tag of any kind, no real name
    assert all(name.startswith("gpu-launcher/standin-") for name in made), made
    assert not any(line.startswith("tag ") for line in Path(no_registry["SHIM_LOG"]).read_text()
                   .splitlines())


@pytest.mark.parametrize("name", ["python:3.11-slim", "nvidia/cuda:12.6.3-runtime-ubuntu24.04"])
def test_standin_images_refuses_to_play_a_real_image(no_registry: dict[str, str],
                                                    name: str) -> None:
    result = _run("standin-images", name, env=no_registry)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"standin: unknown argument: {name} (stand-ins are never tagged under another name)",
        ("hint: scripts/standin-images [--name]; pass the stand-in with --base-image "
         "gpu-launcher/standin-bookworm:latest")]
    assert _made(no_registry) == []


def test_standin_images_is_idempotent(no_registry: dict[str, str]) -> None:
    assert _run("standin-images", env=no_registry).returncode == 0
    again = _run("standin-images", env=no_registry)
    assert (again.returncode, again.stdout) == (0, "gpu-launcher/standin-bookworm:latest\n")
    assert _made(no_registry) == ["gpu-launcher/standin-bookworm:latest"]


def test_a_stand_in_an_older_set_up_left_under_a_real_name_is_named_not_used(
        no_registry: dict[str, str]) -> None:
    # The engine holds python:3.11-slim and prom/prometheus:v3.7.3, both stand-ins (labelled).
    poisoned = ["python:3.11-slim", "prom/prometheus:v3.7.3"]
    for key in ("SHIM_MADE", "SHIM_STANDINS"):
        Path(no_registry[key]).write_text("\n".join(poisoned) + "\n")
    base = _run("standin-images", env=no_registry)
    assert base.returncode == 0, base.stderr
    assert ("standin: warning: python:3.11-slim here is a stand-in under the real name (an "
            "older set-up tagged it); remove that name: docker rmi python:3.11-slim"
            in base.stderr.splitlines())
    third = _run("standin-third-party", env=no_registry)
    assert third.returncode == 0, third.stderr
    # compose is pointed at the stand-in's own name, which it gets without a rebuild
    assert third.stdout == "PROMETHEUS_IMAGE=gpu-launcher/standin-prometheus:v3.7.3\n"
    assert "docker rmi prom/prometheus:v3.7.3" in third.stderr
    made = _made(no_registry)[len(poisoned):]
    assert made == ["gpu-launcher/standin-bookworm:latest",
                    "gpu-launcher/standin-prometheus:v3.7.3"]
    assert not any(line.startswith("rmi ") for line in
                   Path(no_registry["SHIM_LOG"]).read_text().splitlines())  # never untags
