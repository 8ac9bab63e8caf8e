"""Which CUDA image and torch wheel a host can run: the data table (``data/cuda.json``, each row
with its source) and the pure choice over it.

Rule: the image's CUDA minor must be ≤ the CUDA version the driver reports (the ``nvidia/cuda``
images carry ``NVIDIA_REQUIRE_CUDA=cuda>=X.Y`` and the container toolkit refuses to start them on
an older driver), ≥ every selected GPU's minimum, and below the release that dropped its
architecture; among those, the newest CUDA the pinned torch has wheels for.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

__all__ = [
    "TORCH_VERSION",
    "CudaChoice",
    "CudaTable",
    "GpuNeed",
    "NoCudaFits",
    "choose_cuda",
    "cuda_table",
    "format_version",
    "parse_cuda_version",
]

# The torch requirements.lock pins. Written here, not read from the lock: an installed launcher
# (pip install) ships launcher/ and its data, not the checkout's lock; tests/unit/test_pins.py
# holds the two equal.
TORCH_VERSION = "2.13.0"

Version = tuple[int, int]


def parse_cuda_version(text: str) -> Version:
    """``"12.4"`` → ``(12, 4)``; ValueError with the value echoed otherwise."""
    major, dot, minor = text.partition(".")
    if not (dot and major.isdigit() and minor.isdigit() and major.isascii() and minor.isascii()):
        raise ValueError(f"invalid CUDA version '{text}': expected MAJOR.MINOR, e.g. 12.8")
    return int(major), int(minor)


def format_version(version: Version) -> str:
    return f"{version[0]}.{version[1]}"


def _driver_key(driver: str) -> tuple[int, ...]:
    return tuple(int(p) for p in driver.split(".") if p.isdigit())


@dataclass(frozen=True)
class Release:
    cuda: Version
    latest_patch: str
    min_driver: str
    ubuntu: tuple[str, ...]


@dataclass(frozen=True)
class Arch:
    name: str
    compute_capabilities: tuple[Version, ...]
    min_cuda: Version
    dropped_in: Version | None


@dataclass(frozen=True)
class Variant:
    cuda: Version
    wheel: str
    index_url: str


@dataclass(frozen=True)
class CudaTable:
    releases: tuple[Release, ...]
    archs: tuple[Arch, ...]
    torch_variants: tuple[Variant, ...]
    cpu_index_url: str
    default_ubuntu: str
    unprobed_default: Version  # the CUDA for an unknown driver (--no-probe)

    def release(self, cuda: Version) -> Release | None:
        return next((r for r in self.releases if r.cuda == cuda), None)

    def arch(self, capability: Version) -> Arch | None:
        return next((a for a in self.archs if capability in a.compute_capabilities), None)

    def driver_cuda(self, driver: str) -> Version | None:
        """The newest CUDA a driver version runs, from the table (when NVML cannot say)."""
        fits = [r.cuda for r in self.releases if _driver_key(r.min_driver) <= _driver_key(driver)]
        return max(fits) if fits else None


def _load(data: dict[str, Any], torch_version: str) -> CudaTable:
    torch = next(t for t in data["torch"] if t["version"] == torch_version)
    return CudaTable(
        releases=tuple(
            Release(parse_cuda_version(r["cuda"]), r["latest_patch"], r["min_driver"],
                    tuple(r["ubuntu"]))
            for r in data["cuda_releases"]
        ),
        archs=tuple(
            Arch(a["arch"], tuple(parse_cuda_version(c) for c in a["compute_capabilities"]),
                 parse_cuda_version(a["min_cuda"]),
                 parse_cuda_version(a["dropped_in"]) if a["dropped_in"] else None)
            for a in data["architectures"]
        ),
        torch_variants=tuple(
            Variant(parse_cuda_version(v["cuda"]), v["wheel"], v["index_url"])
            for v in torch["cuda_variants"]
        ),
        cpu_index_url=torch["cpu_index_url"],
        default_ubuntu=data["default_ubuntu"],
        unprobed_default=parse_cuda_version(torch["unprobed_default"]),
    )


@cache
def cuda_table(torch_version: str = TORCH_VERSION) -> CudaTable:
    """The packaged table for ``torch_version``."""
    text = resources.files("launcher").joinpath("data/cuda.json").read_text()
    return _load(json.loads(text), torch_version)


@dataclass(frozen=True)
class GpuNeed:
    """What the choice needs to know about one selected GPU."""

    name: str
    compute_capability: Version

    @property
    def sm(self) -> str:
        return f"sm_{self.compute_capability[0]}{self.compute_capability[1]}"


@dataclass(frozen=True)
class CudaChoice:
    cuda: Version
    image: str  # nvidia/cuda:X.Y.Z-runtime-ubuntuNN.NN
    wheel: str  # cu128
    index_url: str
    explanation: str

    def to_json(self) -> dict[str, str]:
        return {"cuda": format_version(self.cuda), "image": self.image, "wheel": self.wheel,
                "torch_index_url": self.index_url, "explanation": self.explanation}


class NoCudaFits(Exception):
    """No CUDA image fits the driver and GPUs; ``explanation`` says why, ``hint`` what to do."""

    def __init__(self, explanation: str, hint: str) -> None:
        super().__init__(explanation)
        self.explanation = explanation
        self.hint = hint


def _image(table: CudaTable, release: Release) -> str:
    ubuntu = table.default_ubuntu if table.default_ubuntu in release.ubuntu else release.ubuntu[-1]
    return f"nvidia/cuda:{release.latest_patch}-runtime-ubuntu{ubuntu}"


def _gpu_range(table: CudaTable, gpu: GpuNeed) -> tuple[Version, Version | None, str]:
    """(minimum CUDA, first CUDA without it or None, the phrase for the explanation)."""
    arch = table.arch(gpu.compute_capability)
    if arch is None:  # newer than the table: ask for the newest CUDA the table knows
        newest = max(r.cuda for r in table.releases)
        return newest, None, f"{gpu.name} ({gpu.sm}, not in the table) needs ≥ {format_version(newest)}"
    phrase = f"{gpu.name} ({gpu.sm}) needs ≥ {format_version(arch.min_cuda)}"
    if arch.dropped_in:
        phrase += f" and < {format_version(arch.dropped_in)}"
    return arch.min_cuda, arch.dropped_in, phrase


def choose_cuda(
    table: CudaTable,
    driver: str | None,
    driver_cuda: Version | None,
    gpus: Sequence[GpuNeed],
    pinned: Version | None = None,
) -> CudaChoice:
    """The newest torch CUDA variant that the driver runs and every GPU supports.

    ``driver``/``driver_cuda`` None means "not probed" (``--no-probe``): the driver is unknown,
    so unless ``pinned`` says otherwise the table's conservative default is taken rather than the
    newest (which would demand the newest driver of a host nobody looked at).
    Raises :class:`NoCudaFits` with the explanation and a hint.
    """
    parts: list[str] = []
    user_pinned = pinned is not None
    if driver is None and driver_cuda is None and pinned is None and not gpus:
        pinned = table.unprobed_default
        parts.append(f"driver unknown: CUDA {format_version(pinned)} by default "
                     "(drivers ≥ 570; pin another with --cuda)")
    ceiling = driver_cuda or (table.driver_cuda(driver) if driver else None)
    if driver is not None:
        runs = format_version(ceiling) if ceiling else "no CUDA in the table"
        parts.append(f"driver {driver} runs CUDA ≤ {runs}")
    low: Version = (0, 0)
    high: Version | None = None  # exclusive
    for gpu in gpus:
        gpu_low, gpu_high, phrase = _gpu_range(table, gpu)
        parts.append(phrase)
        low = max(low, gpu_low)
        if gpu_high is not None:
            high = gpu_high if high is None else min(high, gpu_high)
    variants = [v for v in table.torch_variants if table.release(v.cuda) is not None]
    parts.append(f"torch {TORCH_VERSION} wheels: " + ", ".join(v.wheel for v in variants))
    if pinned is not None:
        if all(v.cuda != pinned for v in variants):
            raise NoCudaFits(
                f"torch {TORCH_VERSION} has no wheels for CUDA {format_version(pinned)}",
                "pick one of --cuda " + ", ".join(format_version(v.cuda) for v in variants),
            )
        variants = [v for v in variants if v.cuda == pinned]
        if user_pinned:
            parts.append(f"--cuda {format_version(pinned)}")
    for_gpus = [v for v in variants if v.cuda >= low and (high is None or v.cuda < high)]
    fits = [v for v in for_gpus if ceiling is None or v.cuda <= ceiling]
    explanation = "; ".join(parts)
    if not fits:
        if for_gpus:  # the GPUs are fine, the driver is too old
            need = min(for_gpus, key=lambda v: v.cuda)
            release = table.release(need.cuda)
            assert release is not None
            hint = (f"upgrade the NVIDIA driver to ≥ {release.min_driver} "
                    f"(CUDA {format_version(need.cuda)}), or run on CPU without --gpus")
            explanation += f" → none fits: upgrade the driver to ≥ {release.min_driver}"
        elif pinned is not None:
            hint = "drop --cuda to let the launcher choose, or pick a CUDA the GPUs support"
            explanation += " → none fits the selected GPUs"
        else:
            hint = ("no torch CUDA build supports the selected GPUs together; select GPUs of "
                    "one generation with --gpus '\"device=...\"', or run on CPU without --gpus")
            explanation += " → none fits the selected GPUs"
        raise NoCudaFits(explanation, hint)
    best = max(fits, key=lambda v: v.cuda)
    release = table.release(best.cuda)
    assert release is not None
    image = _image(table, release)
    explanation += f" → {image} with {best.wheel}"
    return CudaChoice(best.cuda, image, best.wheel, best.index_url, explanation)
