"""Optional dependencies, said in one line: which install brings a module that is missing.

``pip install gpu-launcher`` is the launcher (Docker SDK, nvidia-ml-py, PyYAML); ``[service]`` adds the
web stack; torch is the user's own choice of build (pyproject.toml says why). Pure, and free of
imports beyond the standard library, so both the launcher and ``python -m service`` can use it
before anything else has loaded.
"""

from __future__ import annotations

from service._errors import ServiceError

__all__ = ["CPU_TORCH_INDEX", "MissingDependency", "missing_dependency"]

# PyTorch's CPU wheel index (https://pytorch.org/get-started/locally/, Linux + Pip + CPU): a
# copy of launcher/data/cuda.json's, which the service cannot read in its image (no launcher/);
# tests/unit/test_pins.py holds the two equal.
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
_BASE = "pip install gpu-launcher (the base install brings it)"
_SERVICE = "pip install 'gpu-launcher[service]'"
_TORCH = (f"pip install torch --index-url {CPU_TORCH_INDEX} (a CPU build; "
          "download.pytorch.org/whl/cu126 for CUDA 12.6; plain PyPI on Linux is a CUDA build)")

# Top-level module -> (what it is, the install that brings it).
_PROVIDERS: dict[str, tuple[str, str]] = {
    "docker": ("the Docker SDK for Python", _BASE),
    "requests": ("requests (the Docker SDK's HTTP client)", _BASE),
    "pynvml": ("nvidia-ml-py", _BASE),
    "yaml": ("PyYAML", _BASE),
    **{module: (what, _SERVICE) for module, what in (
        ("fastapi", "FastAPI"), ("starlette", "Starlette (FastAPI's)"),
        ("pydantic", "pydantic (FastAPI's)"), ("uvicorn", "uvicorn"),
        ("httptools", "httptools"), ("uvloop", "uvloop"), ("orjson", "orjson"),
        ("prometheus_client", "prometheus-client"))},
    "torch": ("torch", _TORCH),
}


class MissingDependency(ServiceError):
    """A module an optional part needs is not installed; ``hint`` is the install command."""


def missing_dependency(exc: ModuleNotFoundError, needed_by: str) -> MissingDependency | None:
    """The one-line answer for ``exc`` when it names a dependency of ours (None: it does not,
    and the caller re-raises: a module of ours that is missing is a bug, not a set-up step)."""
    top = (exc.name or "").partition(".")[0]
    provider = _PROVIDERS.get(top)
    if provider is None:
        return None
    what, install = provider
    return MissingDependency(f"{needed_by} needs {what} (module {top!r}), which is not installed",
                             install)
