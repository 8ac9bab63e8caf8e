"""The container's resource limits parsed like the Docker CLI (go-units, docker/cli ``opts/``):
``--memory``/``--shm-size`` sizes, ``--cpus``, ``--ulimit``.

Each parser is a pure function that returns Engine API values or raises
:class:`~launcher._flags.FlagError` with Docker's own text; where the daemon rejects a value the
CLI passes on (negative CPUs), we reject it up front with the daemon's text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from launcher._flags import FlagError

__all__ = [
    "MIN_MEMORY",
    "Ulimit",
    "merge_ulimits",
    "parse_bytes",
    "parse_cpus",
    "parse_ulimit",
]

MIN_MEMORY = 6 * 1024 * 1024  # the daemon's floor for --memory
_GO_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
_SIZE_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_GO_INT = re.compile(r"[+-]?[0-9]+\Z")
# go-units ulimitNameMapping: the rlimits docker accepts by name
_ULIMIT_NAMES = frozenset(
    {"core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc",
     "rss", "rtprio", "rttime", "sigpending", "stack"}
)


# --- --memory / --shm-size / --cpus ---------------------------------------------------------


def parse_bytes(value: str) -> int:
    """go-units ``RAMInBytes`` (docker 28): ``512m``, ``1.5g``, ``1 GiB``, ``1KB``, ``100``;
    binary units, a number as Go's ``ParseFloat`` reads it, then an optional suffix."""
    sep = max(value.rfind(c) for c in "0123456789. ")
    if sep < 0:
        raise FlagError(f"invalid size: '{value}'")
    number, suffix = (value[:sep], value[sep + 1:]) if value[sep] == " " else (
        value[: sep + 1], value[sep + 1:])
    if not _GO_FLOAT.match(number):
        raise FlagError(f'strconv.ParseFloat: parsing "{number}": invalid syntax')
    size = float(number)
    if size < 0:
        raise FlagError(f"invalid size: '{value}'")
    unit = suffix.lower()
    if unit in ("", "b"):
        return int(size)
    if len(unit) > 3 or unit[0] not in _SIZE_UNITS or unit[1:] not in ("", "b", "ib"):
        raise FlagError(f"invalid suffix: '{unit if len(unit) <= 3 else suffix}'")
    return int(size * _SIZE_UNITS[unit[0]])


def parse_cpus(value: str) -> int:
    """docker/cli ``NanoCPUs``: a rational number of CPUs → NanoCpus (1.5 → 1500000000)."""
    try:
        cpus = Fraction(value)
    except (ValueError, ZeroDivisionError):
        raise FlagError(f"failed to parse {value} as a rational number") from None
    nano = cpus * 10**9
    if nano.denominator != 1:
        raise FlagError("value is too precise")
    if nano < 0:  # the daemon's check, done here
        raise FlagError(f"invalid value {value}: the number of CPUs cannot be negative")
    return int(nano)


# --- --ulimit -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ulimit:
    """One ``HostConfig.Ulimits`` entry; -1 is unlimited."""

    name: str
    soft: int
    hard: int

    def to_api(self) -> dict[str, Any]:
        return {"Name": self.name, "Soft": self.soft, "Hard": self.hard}


def _parse_int64(text: str) -> int:
    """Go's ``strconv.ParseInt(text, 10, 64)``: a sign and ASCII digits, nothing else."""
    if not _GO_INT.match(text):
        raise FlagError(f'strconv.ParseInt: parsing "{text}": invalid syntax')
    number = int(text)
    if not -(1 << 63) <= number < 1 << 63:
        raise FlagError(f'strconv.ParseInt: parsing "{text}": value out of range')
    return number


def parse_ulimit(value: str) -> Ulimit:
    """go-units ``ParseUlimit`` (docker 28): ``NAME=SOFT[:HARD]``, HARD defaults to SOFT, -1 is
    unlimited, and SOFT may not exceed HARD (an unlimited HARD allows any SOFT)."""
    name, has_equals, limits = value.partition("=")
    if not has_equals:
        raise FlagError(f"invalid ulimit argument: {value}")
    if name not in _ULIMIT_NAMES:
        raise FlagError(f"invalid ulimit type: {name}")
    parts = limits.split(":")
    if len(parts) > 2:
        raise FlagError(f"too many limit value arguments - {limits}, can only have up to two, "
                        "`soft[:hard]`")
    hard = _parse_int64(parts[1]) if len(parts) == 2 else None  # Go parses HARD first
    soft = _parse_int64(parts[0])
    hard = soft if hard is None else hard
    if hard != -1 and soft == -1:
        raise FlagError("ulimit soft limit must be less than or equal to hard limit: "
                        f"soft: -1 (unlimited), hard: {hard}")
    if hard != -1 and soft > hard:
        raise FlagError("ulimit soft limit must be less than or equal to hard limit: "
                        f"{soft} > {hard}")
    return Ulimit(name, soft, hard)


def merge_ulimits(defaults: Sequence[Ulimit], given: Sequence[Ulimit]) -> list[Ulimit]:
    """docker/cli ``UlimitOpt``: one entry per name, the last given wins, sorted by name (as
    docker 28 sends them); a given name replaces that default."""
    by_name = {u.name: u for u in (*defaults, *given)}
    return [by_name[n] for n in sorted(by_name)]
