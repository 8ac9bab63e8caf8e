"""The NVIDIA Container Toolkit's image requirements (``NVIDIA_REQUIRE_CUDA`` and every other
``NVIDIA_REQUIRE_*`` variable in the image config), parsed and checked against a probed host
with the toolkit's own rules, so ``launcher up`` refuses with a hint before the toolkit refuses
with "unsatisfied condition".

The rules, from NVIDIA/nvidia-container-toolkit ``internal/requirements`` (docs/launcher.md):
each variable is one requirement and all must hold; inside one, terms separated by spaces are
ORed and the conditions of a term separated by commas are ANDed; a condition is
``PROPERTY OP VALUE`` with OP one of ``!= <= >= == = < >``; the properties are ``cuda`` (the
CUDA version the driver runs), ``driver`` (its version), ``arch`` (GPU 0's compute capability)
and ``brand`` (GPU 0's NVML brand, lower case); other properties are skipped.
``NVIDIA_DISABLE_REQUIRE`` set to anything turns the check off.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "Condition",
    "HostFacts",
    "RequirementError",
    "check_requirements",
    "image_requirements",
    "parse_requirement",
]

_OPERATORS = ("!=", "<=", ">=", "==", "=", "<", ">")  # the toolkit's order of matching
_PROPERTIES = ("cuda", "driver", "arch", "brand")
_VERSIONED = ("cuda", "driver", "arch")


class RequirementError(ValueError):
    """A requirement the toolkit would reject as malformed (it refuses such images too)."""


@dataclass(frozen=True)
class Condition:
    prop: str
    op: str
    value: str

    def __str__(self) -> str:
        return f"{self.prop}{self.op}{self.value}"


Term = tuple[Condition, ...]  # ANDed


def _version(text: str) -> tuple[int, ...] | None:
    """A version as the toolkit's semver compare sees it (``525.60.13``, ``12.8``)."""
    parts = text.split(".")
    if not (1 <= len(parts) <= 3) or not all(p.isdigit() and p.isascii() for p in parts):
        return None
    return tuple(int(p) for p in parts) + (0,) * (3 - len(parts))


def _condition(text: str, variable: str) -> Condition | None:
    end = next((i for i, c in enumerate(text) if c in "<>=!"), -1)
    if end == -1:
        raise RequirementError(f"{variable}: invalid constraint '{text}': no operator")
    prop, rest = text[:end], text[end:]
    if prop not in _PROPERTIES:
        return None  # the toolkit skips properties it does not know
    op = next((o for o in _OPERATORS if rest.startswith(o)), "")
    value = rest[len(op):]
    if prop in _VERSIONED and _version(value) is None:
        raise RequirementError(f"{variable}: invalid value '{value}' in '{text}': expected a "
                               "version")
    return Condition(prop, op, value)


def parse_requirement(text: str, variable: str = "NVIDIA_REQUIRE_CUDA") -> tuple[Term, ...]:
    """One requirement → its ORed terms, each a tuple of ANDed conditions (empty: always)."""
    terms = []
    for raw in text.split(" "):
        conditions = [c for f in raw.split(",") if f.strip()
                      if (c := _condition(f, variable)) is not None]
        if conditions:
            terms.append(tuple(conditions))
    return tuple(terms)


@dataclass(frozen=True)
class HostFacts:
    """What the toolkit compares against: ``None`` where it could not read a value."""

    driver: str | None
    cuda: str | None  # "12.4"
    arch: str | None = None  # GPU 0's compute capability, "9.0"
    brand: str | None = None  # GPU 0's NVML brand: "tesla", "geforcertx", ...


def _holds(cond: Condition, host: HostFacts) -> bool:
    have = {"driver": host.driver, "cuda": host.cuda, "arch": host.arch,
            "brand": host.brand}[cond.prop] or ""
    if cond.prop == "brand":
        cmp = (have > cond.value) - (have < cond.value)
    else:
        mine, theirs = _version(have), _version(cond.value)
        if mine is None:  # an unknown value compares below every version, as semver's does
            cmp = -1
        else:
            assert theirs is not None
            cmp = (mine > theirs) - (mine < theirs)
    return {"!=": cmp != 0, "<=": cmp <= 0, ">=": cmp >= 0, "==": cmp == 0, "=": cmp == 0,
            "<": cmp < 0, ">": cmp > 0}.get(cond.op, False)


def image_requirements(env: Iterable[str]) -> dict[str, str] | None:
    """The ``NVIDIA_REQUIRE_*`` variables of an image config's ``Env`` list, or None when
    ``NVIDIA_DISABLE_REQUIRE`` turns the check off."""
    pairs = dict(e.partition("=")[::2] for e in env)
    if "NVIDIA_DISABLE_REQUIRE" in pairs:
        return None
    return {k: v for k, v in pairs.items() if k.startswith("NVIDIA_REQUIRE_")}


def check_requirements(requirements: Mapping[str, str], host: HostFacts) -> str | None:
    """None when the host satisfies every requirement, else the reason, as the toolkit's
    "unsatisfied condition" names it (the first failing variable and its CUDA term)."""
    for variable, text in sorted(requirements.items()):
        terms = parse_requirement(text, variable)
        if not terms or any(all(_holds(c, host) for c in term) for term in terms):
            continue
        first = " ".join(str(c) for c in terms[0])
        alternatives = len(terms) - 1
        have = f"driver {host.driver or 'unknown'} (CUDA {host.cuda or 'unknown'})"
        if host.brand:
            have += f", brand {host.brand}"
        if alternatives:
            return (f"{variable}: {have} satisfies neither {first} nor any of its "
                    f"{alternatives} other alternatives")
        return f"{variable}: {have} does not satisfy {first}"
    return None
