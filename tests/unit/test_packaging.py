"""What ``pip install gpu-launcher[...]`` brings, read from pyproject.toml, and the one-line
answer for a dependency that is missing (service/_deps.py)."""

from __future__ import annotations

import ast
import importlib.metadata
import sys

import pytest
import tomllib
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from launcher import __version__
from launcher._build import CONTEXT_FILES
from service._deps import CPU_TORCH_INDEX, missing_dependency
from tests.conftest import ROOT

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _names(requirements: list[str], platform: str, machine: str) -> set[str]:
    env = {**default_environment(), "sys_platform": platform, "platform_machine": machine}
    reqs = [Requirement(r) for r in requirements]
    return {r.name for r in reqs if r.marker is None or r.marker.evaluate(env)}


def test_the_base_install_is_the_launcher() -> None:
    assert _names(PROJECT["dependencies"], "linux", "x86_64") == {"docker", "nvidia-ml-py", "pyyaml"}


# Where PyPI's torch wheel is a CPU build (https://pytorch.org/get-started/locally/: Linux's
# default pip command installs CUDA; macOS and Windows default to CPU), [service] may bring it.
TORCH_FROM_PYPI = [
    # platform, machine, PyPI's torch is CPU-only, so [service] brings torch
    ("linux", "x86_64", False),
    ("linux", "aarch64", False),
    ("darwin", "arm64", True),
    ("win32", "AMD64", True),
]


@pytest.mark.parametrize("platform, machine, brings_torch", TORCH_FROM_PYPI,
                         ids=[f"{p}-{m}" for p, m, _ in TORCH_FROM_PYPI])
def test_the_service_extra_never_pulls_a_cuda_torch(platform: str, machine: str,
                                                     brings_torch: bool) -> None:
    names = _names(PROJECT["optional-dependencies"]["service"], platform, machine)
    assert {"fastapi", "uvicorn", "orjson", "prometheus-client"} <= names
    assert ("torch" in names) is brings_torch


MISSING = [
    # module missing, needed by, message, hint
    ("docker", "launcher",
     "launcher needs the Docker SDK for Python (module 'docker'), which is not installed",
     "pip install gpu-launcher (the base install brings it)"),
    ("docker.errors", "launcher",
     "launcher needs the Docker SDK for Python (module 'docker'), which is not installed",
     "pip install gpu-launcher (the base install brings it)"),
    ("fastapi", "python -m service",
     "python -m service needs FastAPI (module 'fastapi'), which is not installed",
     "pip install 'gpu-launcher[service]'"),
    ("prometheus_client", "python -m service",
     ("python -m service needs prometheus-client (module 'prometheus_client'), which is not "
     "installed"), "pip install 'gpu-launcher[service]'"),
    ("torch", "python -m service",
     "python -m service needs torch (module 'torch'), which is not installed",
     (f"pip install torch --index-url {CPU_TORCH_INDEX} (a CPU build; "
     "download.pytorch.org/whl/cu126 for CUDA 12.6; plain PyPI on Linux is a CUDA build)")),
]


@pytest.mark.parametrize("module, needed_by, message, hint", MISSING,
                         ids=[m for m, *_ in MISSING])
def test_a_missing_dependency_is_named_with_its_install(module: str, needed_by: str,
                                                        message: str, hint: str) -> None:
    missing = missing_dependency(ModuleNotFoundError(f"No module named {module!r}", name=module),
                                 needed_by)
    assert missing is not None
    assert (missing.message, missing.hint) == (message, hint)


@pytest.mark.parametrize("module", ["service._nope", "launcher.cmd_nope", "sklearn"])
def test_a_module_that_is_not_a_dependency_is_not_explained_away(module: str) -> None:
    assert missing_dependency(ModuleNotFoundError(module, name=module), "launcher") is None


def test_the_dev_extra_brings_the_service_and_no_torch() -> None:
    # `pip install -e '.[dev]'` imports the service (the test suite does); torch comes first,
    # from the CPU index, as for [service].
    dev = [Requirement(r) for r in PROJECT["optional-dependencies"]["dev"]]
    assert any(r.name == "gpu-launcher" and r.extras == {"service"} for r in dev)
    assert "torch" not in {r.name for r in dev}


def test_setup_py_copies_the_build_context_the_launcher_reads() -> None:
    tree = ast.parse((ROOT / "setup.py").read_text())
    copied = next(ast.literal_eval(node.value) for node in ast.walk(tree)
                  if isinstance(node, ast.Assign)
                  and any(getattr(t, "id", None) == "CONTEXT_FILES" for t in node.targets))
    assert copied == CONTEXT_FILES
    manifest = (ROOT / "MANIFEST.in").read_text().split()
    assert set(CONTEXT_FILES) <= set(manifest)


def test_the_version_is_said_once() -> None:
    assert PROJECT["dynamic"] == ["version"]
    for dockerfile in ("Dockerfile", "Dockerfile.gpu"):
        assert f'org.opencontainers.image.version="{__version__}"' in (
            ROOT / dockerfile).read_text()


def _with_dependencies(requirements: list[str]) -> set[str]:
    """The distributions ``requirements`` install, their own dependencies included (as this
    venv's metadata says them; markers ignored, so an over-estimate)."""
    seen: set[str] = set()
    todo = [Requirement(r).name for r in requirements]
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen or name == "gpu-launcher":
            continue
        seen.add(name)
        try:
            todo += [Requirement(r).name for r in importlib.metadata.requires(name) or []]
        except importlib.metadata.PackageNotFoundError:
            continue
    return seen


def test_the_dev_extra_brings_every_module_the_tests_import() -> None:
    imported: set[str] = set()
    for path in (ROOT / "tests").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    # torch is installed first, from PyTorch's CPU index (the [dev] comment in pyproject.toml)
    third_party = imported - set(sys.stdlib_module_names) - {
        "__future__", "launcher", "service", "tests", "torch"}
    extras = PROJECT["optional-dependencies"]
    brought = _with_dependencies(PROJECT["dependencies"] + extras["service"] + extras["dev"])
    providers = importlib.metadata.packages_distributions()
    missing = sorted(module for module in third_party
                     if not {canonicalize_name(d) for d in providers.get(module, [])} & brought)
    assert missing == []
