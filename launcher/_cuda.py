"""Which torch wheel and which ``nvidia/cuda`` image really run on a host's GPUs and driver: the
data table (``data/cuda.json``, each row with its source) and the pure choice over it.

Three facts decide (docs/launcher.md, "Choosing the torch wheel and the CUDA image"):

* **GPU coverage** is the wheel's, not the toolkit's: a wheel runs on a GPU when it carries SASS
  of the same major with minor ≤ the GPU's (``sm_86`` runs on ``sm_89``), or PTX ≤ the GPU's
  capability, which the driver JIT-compiles — only when it runs the wheel's CUDA natively.
* **The driver runs a wheel** natively when its CUDA ≥ the wheel's, and otherwise by minor-version
  compatibility when it is ≥ the floor of the wheel's CUDA major (12.x: 525.60.13, 13.x: 580).
* **The image** is gated by its ``NVIDIA_REQUIRE_CUDA`` (:mod:`launcher._require`): the newest
  ``nvidia/cuda`` release of the wheel's major whose CUDA ≤ both the driver's and the wheel's.

The choice is the newest *stable* variant that covers every selected GPU and that the driver
runs; an experimental variant only when pinned (``--cuda``).
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
    "Variant",
    "choose_cuda",
    "cuda_table",
    "driver_key",
    "format_version",
    "parse_cuda_version",
    "wheel_coverage",
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
        raise ValueError(f"invalid CUDA version '{text}': expected MAJOR.MINOR, e.g. 12.6")
    return int(major), int(minor)


def format_version(version: Version) -> str:
    return f"{version[0]}.{version[1]}"


def sm(capability: Version) -> str:
    return f"sm_{capability[0]}{capability[1]}"


def driver_key(driver: str) -> tuple[int, ...]:
    """``"550.54.15"`` → ``(550, 54, 15)``, for comparing driver versions."""
    return tuple(int(p) for p in driver.split(".") if p.isdigit())


@dataclass(frozen=True)
class Release:
    cuda: Version
    latest_patch: str
    min_driver: str  # the driver that runs it natively (release notes, Table 3)
    ubuntu: tuple[str, ...]


@dataclass(frozen=True)
class Variant:
    """One CUDA build of the pinned torch: ``cu126`` and the code its wheels carry."""

    wheel: str
    cuda: Version
    stable: bool
    sass: tuple[Version, ...]
    ptx: tuple[Version, ...]
    index_url: str

    def covers(self, capability: Version) -> str | None:
        """How this wheel runs on a GPU of ``capability``: ``"sm_86"`` (its SASS), ``"PTX"``
        (JIT from its PTX), or None (no kernel image for the device)."""
        fits = [s for s in self.sass if s[0] == capability[0] and s[1] <= capability[1]]
        if fits:
            return sm(max(fits))
        if any(p <= capability for p in self.ptx):
            return "PTX"
        return None

    def code(self) -> str:
        """``sm_50…sm_90`` or ``sm_75…sm_120+PTX``: what the wheels carry, for messages."""
        text = f"{sm(min(self.sass))}…{sm(max(self.sass))}"
        return text + ("+PTX" if self.ptx else "")


@dataclass(frozen=True)
class CudaTable:
    torch_version: str
    releases: tuple[Release, ...]
    minor_compat: tuple[tuple[int, str], ...]  # (CUDA major, the driver floor of minor compat)
    variants: tuple[Variant, ...]
    cpu_index_url: str
    default_ubuntu: str
    unprobed_default: str  # the wheel for an unknown host (--no-probe)

    def release(self, cuda: Version) -> Release | None:
        return next((r for r in self.releases if r.cuda == cuda), None)

    def variant(self, cuda: Version) -> Variant | None:
        return next((v for v in self.variants if v.cuda == cuda), None)

    def compat_floor(self, major: int) -> str | None:
        return next((d for m, d in self.minor_compat if m == major), None)

    def driver_cuda(self, driver: str) -> Version | None:
        """The newest CUDA a driver runs natively, from the table (when NVML cannot say)."""
        fits = [r.cuda for r in self.releases if driver_key(r.min_driver) <= driver_key(driver)]
        return max(fits) if fits else None

    def image(self, variant: Variant, driver_cuda: Version | None) -> str | None:
        """The ``nvidia/cuda`` runtime image for ``variant``: the newest release of its major
        with CUDA ≤ the wheel's and ≤ what the driver runs (its ``cuda>=X.Y`` holds)."""
        fits = [r for r in self.releases if r.cuda[0] == variant.cuda[0] and r.cuda <= variant.cuda
                and (driver_cuda is None or r.cuda <= driver_cuda)]
        if not fits:
            return None
        release = max(fits, key=lambda r: r.cuda)
        ubuntu = (self.default_ubuntu if self.default_ubuntu in release.ubuntu
                  else release.ubuntu[-1])
        return f"nvidia/cuda:{release.latest_patch}-runtime-ubuntu{ubuntu}"


def _load(data: dict[str, Any], torch_version: str) -> CudaTable:
    torch = next(t for t in data["torch"] if t["version"] == torch_version)
    return CudaTable(
        torch_version=torch_version,
        releases=tuple(
            Release(parse_cuda_version(r["cuda"]), r["latest_patch"], r["min_driver"],
                    tuple(r["ubuntu"]))
            for r in data["cuda_releases"]
        ),
        minor_compat=tuple((int(m["major"]), m["min_driver"])
                           for m in data["minor_version_compatibility"]),
        variants=tuple(
            Variant(v["wheel"], parse_cuda_version(v["cuda"]), v["status"] == "stable",
                    tuple(parse_cuda_version(c) for c in v["sass"]),
                    tuple(parse_cuda_version(c) for c in v["ptx"]), v["index_url"])
            for v in torch["variants"]
        ),
        cpu_index_url=torch["cpu_index_url"],
        default_ubuntu=data["default_ubuntu"],
        unprobed_default=torch["unprobed_default"],
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
        return sm(self.compute_capability)

    @property
    def label(self) -> str:
        return f"{self.name} ({self.sm})"


@dataclass(frozen=True)
class CudaChoice:
    cuda: Version
    image: str  # nvidia/cuda:X.Y.Z-runtime-ubuntuNN.NN
    wheel: str  # cu126
    index_url: str
    explanation: str
    torch: str  # the local version Dockerfile.gpu installs: 2.13.0+cu126
    experimental: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"cuda": format_version(self.cuda), "image": self.image, "wheel": self.wheel,
                "torch": self.torch, "experimental": self.experimental,
                "torch_index_url": self.index_url, "explanation": self.explanation}


class NoCudaFits(Exception):
    """No wheel fits the driver and GPUs; ``explanation`` says why, ``hint`` what to do."""

    def __init__(self, explanation: str, hint: str) -> None:
        super().__init__(explanation)
        self.explanation = explanation
        self.hint = hint


def wheel_coverage(table: CudaTable, capability: Version) -> list[tuple[Variant, str]]:
    """Every variant of the pinned torch that has code for a GPU, with how (``launcher probe``)."""
    found = [(v, v.covers(capability)) for v in table.variants]
    return [(v, how) for v, how in found if how is not None]


def _runs(table: CudaTable, variant: Variant, driver: str, driver_cuda: Version | None,
          needs_native: bool) -> str | None:
    """How the driver runs ``variant`` ("natively", "by minor-version compatibility") or None."""
    if driver_cuda is not None and driver_cuda >= variant.cuda:
        return "natively"
    if needs_native:
        return None
    floor = table.compat_floor(variant.cuda[0])
    if floor is not None and driver_key(driver) >= driver_key(floor):
        return f"by minor-version compatibility ({variant.cuda[0]}.x on ≥ {floor})"
    return None


def _driver_needed(table: CudaTable, variant: Variant, needs_native: bool) -> tuple[str, str]:
    """(sort key, phrase): the oldest driver that runs ``variant`` for these GPUs."""
    floor = table.compat_floor(variant.cuda[0])
    release = table.release(variant.cuda)
    if not needs_native and floor is not None:
        return floor, f"≥ {floor}"
    if release is not None:
        return release.min_driver, f"≥ {release.min_driver}"
    return "99999", f"that runs CUDA {format_version(variant.cuda)} natively"


def _choice(table: CudaTable, variant: Variant, image: str, explanation: str) -> CudaChoice:
    explanation += f" → {image} with {variant.wheel} (torch {table.torch_version}+{variant.wheel})"
    return CudaChoice(variant.cuda, image, variant.wheel, variant.index_url, explanation,
                      torch=f"{table.torch_version}+{variant.wheel}",
                      experimental=not variant.stable)


def _unprobed(table: CudaTable, pinned: Version | None, parts: list[str]) -> CudaChoice:
    if pinned is not None:
        variant = table.variant(pinned)
        assert variant is not None
        parts.append(f"--cuda {format_version(pinned)}: {variant.wheel}")
    else:
        variant = next(v for v in table.variants if v.wheel == table.unprobed_default)
        parts.append(f"driver and GPUs unknown: {variant.wheel} by default ({variant.code()}, "
                     f"any driver ≥ {table.compat_floor(variant.cuda[0])}; pin another with "
                     "--cuda)")
    image = table.image(variant, None)
    assert image is not None
    return _choice(table, variant, image, "; ".join(parts))


def choose_cuda(
    table: CudaTable,
    driver: str | None,
    driver_cuda: Version | None,
    gpus: Sequence[GpuNeed],
    pinned: Version | None = None,
) -> CudaChoice:
    """The newest stable torch variant that covers every GPU and that the driver runs, and the
    ``nvidia/cuda`` image for it (see the module text). ``pinned`` (``--cuda``) takes that
    variant only, experimental ones too.

    ``driver`` None means "not probed" (``--no-probe``): the table's default, or ``pinned``.
    Raises :class:`NoCudaFits` with the explanation and a hint naming what to do.
    """
    parts: list[str] = []
    if pinned is not None and table.variant(pinned) is None:
        known = ", ".join(format_version(v.cuda) for v in table.variants)
        raise NoCudaFits(f"torch {table.torch_version} has no wheels for CUDA "
                         f"{format_version(pinned)}", f"pick one of --cuda {known}")
    if driver is None:
        return _unprobed(table, pinned, parts)
    ceiling = driver_cuda or table.driver_cuda(driver)
    parts.append(f"driver {driver} runs CUDA ≤ {format_version(ceiling)}" if ceiling
                 else f"driver {driver} runs no CUDA in the table")
    if gpus:
        parts.append("GPUs: " + ", ".join(g.label for g in gpus))
    if pinned is not None:
        pin = table.variant(pinned)
        assert pin is not None
        candidates = [pin]
        parts.append(f"--cuda {format_version(pinned)}: {pin.wheel}"
                     + ("" if pin.stable else " (experimental)"))
    else:
        candidates = sorted((v for v in table.variants if v.stable), key=lambda v: v.cuda,
                            reverse=True)
        parts.append(f"torch {table.torch_version} stable wheels: "
                     + ", ".join(f"{v.wheel} ({v.code()})" for v in candidates))
    # Every GPU no variant at all has code for: no driver or pin can help.
    for gpu in gpus:
        if not wheel_coverage(table, gpu.compute_capability):
            oldest = min((v for v in table.variants), key=lambda v: min(v.sass))
            why = ("older than every wheel" if gpu.compute_capability < min(oldest.sass)
                   else "not covered by any wheel")
            raise NoCudaFits(
                "; ".join(parts) + f" → {gpu.label} is {why} of torch {table.torch_version} "
                f"(oldest code: {sm(min(oldest.sass))} in {oldest.wheel})",
                f"no torch {table.torch_version} wheel has kernels for {gpu.label}: leave it out "
                "with --gpus '\"device=...\"', or run on CPU without --gpus")
    covering: list[tuple[Variant, bool]] = []  # (variant, needs the driver to JIT its PTX)
    for variant in candidates:
        ways = [variant.covers(g.compute_capability) for g in gpus]
        missing = [g.sm for g, how in zip(gpus, ways, strict=True) if how is None]
        if missing:
            parts.append(f"{variant.wheel}: no code for {', '.join(missing)}")
            continue
        needs_native = "PTX" in ways
        how = _runs(table, variant, driver, ceiling, needs_native)
        if how is None:
            need = _driver_needed(table, variant, needs_native)[1]
            parts.append(f"{variant.wheel}: needs a driver {need}"
                         + (" (PTX JIT needs its CUDA natively)" if needs_native else ""))
            covering.append((variant, needs_native))
            continue
        image = table.image(variant, ceiling)
        if image is None:
            parts.append(f"{variant.wheel}: no nvidia/cuda {variant.cuda[0]}.x image in the table "
                         f"for CUDA ≤ {format_version(ceiling) if ceiling else '?'}")
            covering.append((variant, True))
            continue
        parts.append(f"{variant.wheel} runs {how}")
        return _choice(table, variant, image, "; ".join(parts))
    explanation = "; ".join(parts)
    if covering:  # the GPUs are fine, the driver is too old: the smallest upgrade that helps
        variant, native = min(covering,
                              key=lambda c: driver_key(_driver_needed(table, c[0], c[1])[0]))
        need = _driver_needed(table, variant, native)[1]
        raise NoCudaFits(explanation + f" → none fits: install an NVIDIA driver {need}",
                         f"install an NVIDIA driver {need} (for {variant.wheel}), or run on "
                         "CPU without --gpus")
    if pinned is not None:
        others = [v for v in table.variants
                  if v.cuda != pinned and all(v.covers(g.compute_capability) for g in gpus)]
        pick = ", ".join(format_version(v.cuda) for v in others) or "none"
        raise NoCudaFits(explanation + " → the pinned wheel has no code for the selected GPUs",
                         f"drop --cuda to let the launcher choose (wheels that cover them: "
                         f"--cuda {pick})")
    if not gpus:
        raise NoCudaFits(explanation + " → none fits", "pin one with --cuda")
    experimental = [v for v in table.variants if not v.stable
                    and all(v.covers(g.compute_capability) for g in gpus)]
    alternative = (f", or pin the experimental --cuda {format_version(experimental[-1].cuda)}"
                   if experimental else ", or run on CPU without --gpus")
    raise NoCudaFits(
        explanation + " → no stable wheel covers the selected GPUs together",
        f"no stable torch {table.torch_version} wheel has kernels for all of them; select GPUs "
        f"of one generation with --gpus '\"device=...\"'{alternative}")
