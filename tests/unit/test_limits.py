"""Resource-limit flags parsed like the Docker CLI (rows checked against docker 28.2 + engine
20.10): --memory/--shm-size sizes, --cpus, --ulimit."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from launcher._flags import FlagError
from launcher._limits import Ulimit, merge_ulimits, parse_bytes, parse_cpus, parse_ulimit
from tests.conftest import error_text

SIZES = [  # each row as docker 28.2 records --shm-size
    ("1g", 1 << 30), ("512m", 512 << 20), ("1.5g", 3 << 29), ("1GiB", 1 << 30),
    ("1 g", 1 << 30), ("1gib", 1 << 30), ("1KB", 1024), ("0", 0), ("1e3", 1000),
    (".5g", 1 << 29), ("1.g", 1 << 30), ("10M", 10 << 20), ("1tb", 1 << 40), ("1Gb", 1 << 30),
    ("1p", 1 << 50), ("5b", 5), ("1.9999", 1), ("+1k", 1024),
]


SIZE_ERRORS = [
    ("x", "invalid size: 'x'"),
    ("", "invalid size: ''"),
    ("g", "invalid size: 'g'"),
    ("-1g", "invalid size: '-1g'"),
    ("1x", "invalid suffix: 'x'"),
    ("1ib", "invalid suffix: 'ib'"),
    ("1gbb", "invalid suffix: 'gbb'"),
    ("1GiBs", "invalid suffix: 'GiBs'"),
    ("1.5.5g", 'strconv.ParseFloat: parsing "1.5.5": invalid syntax'),
    (" 1g", 'strconv.ParseFloat: parsing " 1": invalid syntax'),
    ("1g ", 'strconv.ParseFloat: parsing "1g": invalid syntax'),
    ("1_000", 'strconv.ParseFloat: parsing "1_000": invalid syntax'),
]


CPUS = [  # NanoCPUs
    ("1.5", 1_500_000_000), ("0.001", 1_000_000), ("2", 2_000_000_000), ("3/2", 1_500_000_000),
]
CPU_ERRORS = [
    ("x", "failed to parse x as a rational number"),
    ("0.0000000001", "value is too precise"),
    ("-1", "invalid value -1: the number of CPUs cannot be negative"),
]


ULIMITS = [  # each row as docker 28.2 records --ulimit
    ("nofile=1024", Ulimit("nofile", 1024, 1024)),
    ("nofile=1024:2048", Ulimit("nofile", 1024, 2048)),
    ("memlock=-1", Ulimit("memlock", -1, -1)),
    ("memlock=-1:-1", Ulimit("memlock", -1, -1)),
    ("memlock=1024:-1", Ulimit("memlock", 1024, -1)),
    ("memlock=8388608", Ulimit("memlock", 8388608, 8388608)),
    ("nofile=+5", Ulimit("nofile", 5, 5)),
    ("nofile=-5", Ulimit("nofile", -5, -5)),
    ("nofile=-2:-1", Ulimit("nofile", -2, -1)),
    ("nice=-5", Ulimit("nice", -5, -5)),
    ("rtprio=0:0", Ulimit("rtprio", 0, 0)),
    ("memlock=9223372036854775807", Ulimit("memlock", (1 << 63) - 1, (1 << 63) - 1)),
]


ULIMIT_ERRORS = [
    ("", "invalid ulimit argument: "),
    ("nofile", "invalid ulimit argument: nofile"),
    ("bogus=1", "invalid ulimit type: bogus"),
    ("NOFILE=1", "invalid ulimit type: NOFILE"),
    (" nofile=1", "invalid ulimit type:  nofile"),
    ("=1", "invalid ulimit type: "),
    ("nofile=x", 'strconv.ParseInt: parsing "x": invalid syntax'),
    ("nofile=", 'strconv.ParseInt: parsing "": invalid syntax'),
    ("nofile=:5", 'strconv.ParseInt: parsing "": invalid syntax'),
    ("nofile=5:", 'strconv.ParseInt: parsing "": invalid syntax'),
    ("nofile=x:y", 'strconv.ParseInt: parsing "y": invalid syntax'),
    ("nofile= 1", 'strconv.ParseInt: parsing " 1": invalid syntax'),
    ("nofile=1_000", 'strconv.ParseInt: parsing "1_000": invalid syntax'),
    ("nofile=0x10", 'strconv.ParseInt: parsing "0x10": invalid syntax'),
    ("nofile=1=2", 'strconv.ParseInt: parsing "1=2": invalid syntax'),
    ("nofile=99999999999999999999",
     'strconv.ParseInt: parsing "99999999999999999999": value out of range'),
    ("nofile=1:2:3",
     "too many limit value arguments - 1:2:3, can only have up to two, `soft[:hard]`"),
    ("nofile=2048:1024",
     "ulimit soft limit must be less than or equal to hard limit: 2048 > 1024"),
    ("memlock=-1:1024", ("ulimit soft limit must be less than or equal to hard limit: "
                         "soft: -1 (unlimited), hard: 1024")),
]


# each limit flag's parser on its rows above: Docker's value, or Docker's error text
Row = tuple[Callable[[str], object], str, object]
PARSED: list[Row] = ([(parse_bytes, v, e) for v, e in SIZES] + [(parse_cpus, v, e) for v, e in CPUS]
                     + [(parse_ulimit, v, e) for v, e in ULIMITS])
REFUSED: list[Row] = ([(parse_bytes, v, m) for v, m in SIZE_ERRORS]
                      + [(parse_cpus, v, m) for v, m in CPU_ERRORS]
                      + [(parse_ulimit, v, m) for v, m in ULIMIT_ERRORS])


def _ids(rows: list[Row]) -> list[str]:
    return [f"{parse.__name__}:{value or 'empty'}" for parse, value, _ in rows]


@pytest.mark.parametrize("parse, value, expected", PARSED, ids=_ids(PARSED))
def test_parses_as_docker(parse: Callable[[str], object], value: str, expected: object) -> None:
    assert parse(value) == expected


@pytest.mark.parametrize("parse, value, message", REFUSED, ids=_ids(REFUSED))
def test_refuses_with_dockers_text(parse: Callable[[str], object], value: str,
                                   message: str) -> None:
    assert error_text(FlagError, parse, value) == message


def test_merge_ulimits_last_given_wins_sorted_by_name() -> None:
    defaults = [Ulimit("memlock", -1, -1), Ulimit("stack", 64, 64)]
    given = [Ulimit("stack", 1, 1), Ulimit("nofile", 1, 1), Ulimit("nofile", 2, 3)]
    assert merge_ulimits(defaults, given) == [
        Ulimit("memlock", -1, -1), Ulimit("nofile", 2, 3), Ulimit("stack", 1, 1)]
