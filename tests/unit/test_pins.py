"""Facts written in more than one place only where a file cannot read them, and held equal
here: the pinned torch, and the CPU torch index (said once, in launcher/data/cuda.json)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from launcher._cuda import TORCH_VERSION, cuda_table
from service._deps import missing_dependency
from tests.conftest import ROOT


def test_torch_version_is_the_one_requirements_lock_pins() -> None:
    pins = re.findall(r"^torch==(\S+)", (ROOT / "requirements.lock").read_text(), re.MULTILINE)
    assert pins == [TORCH_VERSION]


def test_the_cpu_dockerfile_defaults_to_the_tables_cpu_index() -> None:
    # A plain `docker build .` needs the default in the Dockerfile itself.
    default = re.findall(r"^ARG TORCH_INDEX_URL=(\S+)$", (ROOT / "Dockerfile").read_text(),
                         re.MULTILINE)
    assert default == [cuda_table().cpu_index_url]


def _tree() -> list[Path]:
    """The checkout's own files: hidden folders (.git, .venv, .cache) and bytecode left out."""
    files = []
    for folder, dirs, names in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__pycache__"]
        files += [Path(folder) / n for n in names if not n.endswith((".pyc", ".pt", ".whl"))]
    return files


def test_the_cpu_index_url_is_written_only_in_the_table_and_the_dockerfile() -> None:
    url = cuda_table().cpu_index_url
    found = sorted(str(p.relative_to(ROOT)) for p in _tree()
                   if url in p.read_text(errors="replace"))
    assert found == ["Dockerfile", "launcher/data/cuda.json", "service/_deps.py"]


def test_the_gpu_dockerfile_defaults_to_the_unprobed_choice() -> None:
    # `docker build -f Dockerfile.gpu .` builds what `launcher build --gpu --no-probe` does
    # (compose.gpu.yml is held to the same plan by tests/docker/test_compose.py).
    from launcher._cuda import choose_cuda

    choice = choose_cuda(cuda_table(), None, None, [])
    text = (ROOT / "Dockerfile.gpu").read_text()
    defaults = dict(re.findall(r"^ARG (CUDA_IMAGE|TORCH_VARIANT|TORCH_INDEX_URL)=(\S+)$", text,
                               re.MULTILINE))
    assert defaults == {"CUDA_IMAGE": choice.image, "TORCH_VARIANT": choice.wheel,
                        "TORCH_INDEX_URL": choice.index_url}


def test_the_services_torch_hint_names_the_tables_cpu_index() -> None:
    # The service runs where launcher/ is not (the image): its copy is held equal here.
    from service._deps import CPU_TORCH_INDEX

    assert CPU_TORCH_INDEX == cuda_table().cpu_index_url


def test_the_torch_install_hint_names_a_stable_cuda_wheel_of_the_pinned_torch() -> None:
    # service/_deps.py cannot read the table (the image has no launcher/): held to it here.
    hint = missing_dependency(ModuleNotFoundError(name="torch"), "the service")
    assert hint is not None
    named = [(w, c) for w, c in re.findall(r"whl/(cu\d+) for CUDA (\d+\.\d+)", hint.hint)]
    stable = {(v.wheel, f"{v.cuda[0]}.{v.cuda[1]}") for v in cuda_table().variants if v.stable}
    assert named and set(named) <= stable, (named, stable)
