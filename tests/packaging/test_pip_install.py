"""``pip install`` of the project as a new user runs it: a fresh venv, the base install from
PyPI for real (pip's cache keeps it quick), then the launcher's own commands. The base install
is the launcher: no torch, no web stack; what is missing is named in one line, never a traceback.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import requests

from launcher._cuda import TORCH_VERSION
from service._deps import CPU_TORCH_INDEX
from tests.conftest import ServerProcess, free_port, unavailable
from tests.packaging.dist import clean_env, copy_sources, make_venv, run

pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with ``pip install PROJECT`` (base dependencies from PyPI) in it."""
    base = tmp_path_factory.mktemp("pip-install")
    return make_venv(base / "venv", copy_sources(base / "src"))


def _installed(venv: Path) -> set[str]:
    listed = run(venv / "bin" / "python", "-m", "pip", "list", "--format=freeze",
                 "--disable-pip-version-check")
    assert listed.returncode == 0, listed.stderr
    names = (line.partition("==")[0] for line in listed.stdout.splitlines())
    return {name.lower().replace("_", "-") for name in names}


def test_the_base_install_is_the_launcher_without_torch(venv: Path) -> None:
    packages = _installed(venv)
    assert {"gpu-launcher", "docker", "nvidia-ml-py", "pyyaml"} <= packages
    assert not packages & {"torch", "fastapi", "uvicorn"}, sorted(packages)
    assert not [p for p in packages if p.startswith("nvidia-") and p != "nvidia-ml-py"]


def test_launcher_help_and_probe_run_from_the_pip_install(venv: Path, tmp_path: Path) -> None:
    env = clean_env(venv)
    helped = run(venv / "bin" / "launcher", "--help", env=env)
    assert helped.returncode == 0, helped.stderr
    assert "usage: launcher" in helped.stdout and "probe" in helped.stdout
    probed = run(venv / "bin" / "launcher", "probe", "--json", env=env)
    assert probed.returncode == 0, probed.stderr
    assert '"gpus"' in probed.stdout
    assert "Traceback" not in probed.stderr


def test_the_service_without_its_extra_names_the_extra(venv: Path) -> None:
    served = run(venv / "bin" / "python", "-m", "service", env=clean_env(venv))
    assert served.returncode == 1
    assert served.stderr.splitlines() == [
        "error: python -m service needs uvicorn (module 'uvicorn'), which is not installed",
        "hint: pip install 'gpu-launcher[service]'",
    ]


def test_the_launcher_without_the_docker_sdk_names_the_install(venv: Path) -> None:
    # After the base-install checks: it takes the SDK out of the venv (as --no-deps would).
    removed = run(venv / "bin" / "python", "-m", "pip", "uninstall", "-y", "-q",
                  "--disable-pip-version-check", "docker")
    assert removed.returncode == 0, removed.stderr
    env = clean_env(venv)
    # What needs no engine still works ...
    assert run(venv / "bin" / "launcher", "--help", env=env).returncode == 0
    assert run(venv / "bin" / "launcher", "probe", env=env).returncode == 0
    # ... and what needs one says, in one line, which install brings the SDK.
    status = run(venv / "bin" / "launcher", "status", env=env)
    assert (status.returncode, status.stdout) == (1, "")
    assert status.stderr.splitlines() == [
        ("launcher: error: launcher needs the Docker SDK for Python (module 'docker'), which "
         "is not installed"),
        "hint: pip install gpu-launcher (the base install brings it)",
    ]


def test_the_service_extra_never_pulls_torch_on_linux(venv: Path, tmp_path: Path) -> None:
    # After the others: it adds [service] to the venv. On Linux PyPI's torch is a CUDA build,
    # so the extra holds none (pyproject.toml); the service names the CPU index instead.
    source = venv.parent / "src"
    installed = run(venv / "bin" / "python", "-m", "pip", "install", "-q",
                    "--disable-pip-version-check", f"{source}[service]")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    packages = _installed(venv)
    assert {"fastapi", "uvicorn", "orjson", "prometheus-client"} <= packages
    assert "torch" not in packages
    assert not [p for p in packages if p.startswith("nvidia-") and p != "nvidia-ml-py"]
    served = run(venv / "bin" / "python", "-m", "service", env=clean_env(venv))
    assert served.returncode == 1
    assert served.stderr.splitlines() == [
        "error: python -m service needs torch (module 'torch'), which is not installed",
        (f"hint: pip install torch --index-url {CPU_TORCH_INDEX} (a CPU build; "
        "download.pytorch.org/whl/cu126 for CUDA 12.6; plain PyPI on Linux is a CUDA build)"),
    ]


def test_the_service_extra_serves_on_the_host_once_torch_is_in(venv: Path,
                                                                tmp_path: Path) -> None:
    # After the [service] install: torch first, as docs/own-model.md says, by its CPU build's
    # local version (never PyPI's CUDA one); then `python -m service` serves the default model
    # the wheel carries, from a directory that is not the checkout.
    torch = run(venv / "bin" / "python", "-m", "pip", "install", "-q",
                "--disable-pip-version-check", f"torch=={TORCH_VERSION}+cpu")
    if torch.returncode != 0:
        unavailable(f"no torch {TORCH_VERSION}+cpu wheel to install: {torch.stderr[-500:]}")
    port = free_port()
    log_path = tmp_path / "service.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([str(venv / "bin" / "python"), "-m", "service", "--host",
                                 "127.0.0.1", "--port", str(port)], cwd=tmp_path,
                                env={**os.environ, **clean_env(venv)}, stdout=log,
                                stderr=subprocess.STDOUT)
    server = ServerProcess(port, proc, log_path)
    try:
        server.wait_ready(timeout=180)
        answer = requests.post(server.url + "/predict", json={"inputs": [[0] * 64]}, timeout=10)
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["predictions"]) == 1
    finally:
        server.stop()
