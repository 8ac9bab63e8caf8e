"""``parse_gpus`` against docker/cli's ``opts/gpus.go`` behaviour (rows checked with docker 28.2)."""

from __future__ import annotations

from typing import Any

import pytest

from launcher._gpus import GpuSpecError, parse_gpus


def req(count: int = 1, driver: str = "", ids: list[str] | None = None,
        caps: list[list[str]] | None = None, options: dict[str, str] | None = None
        ) -> dict[str, Any]:
    return {"Driver": driver, "Count": count, "DeviceIDs": ids,
            "Capabilities": caps or [["gpu"]], "Options": options or {}}


VALID = [
    ("all", req(-1)),
    ("-1", req(-1)),
    ("count=all", req(-1)),
    ("count=-1", req(-1)),
    ("2", req(2)),
    ("+1", req(1)),
    ("0", req(0)),
    ("count=0", req(0)),
    ("1,2", req(2)),  # a second bare count wins, as in docker
    ('"device=0,2"', req(0, ids=["0", "2"])),
    ("device=0,2", req(2, ids=["0"])),  # unquoted list: device=0 plus a count of 2
    ("device=GPU-3a2c", req(0, ids=["GPU-3a2c"])),
    ("device=", req(0, ids=[""])),
    ("driver=nvidia", req(driver="nvidia")),
    ("driver=", req()),
    ("capabilities=", req(caps=[["", "gpu"]])),
    ('"capabilities=compute,utility",driver=nvidia',
     req(driver="nvidia", caps=[["compute", "utility", "gpu"]])),
    ("options=a=b", req(options={"a": "b"})),
    ('"options=a,b=c"', req(options={"a": "", "b": "c"})),
    ('"options=""a"""', req(options={"a": ""})),
    ('driver=nvidia,"capabilities=compute,utility","options=foo=bar,baz=qux",count=1',
     req(driver="nvidia", caps=[["compute", "utility", "gpu"]],
         options={"foo": "bar", "baz": "qux"})),
    ("all\n1", req(-1)),  # only the first CSV record counts
    ("all\r\n", req(-1)),
    ("\n\nall", req(-1)),
]


@pytest.mark.parametrize("value, expected", VALID, ids=[repr(v) for v, _ in VALID])
def test_parse_gpus_gives_the_docker_device_request(value: str, expected: dict[str, Any]) -> None:
    assert parse_gpus(value).to_api() == expected


INVALID = [
    ("count=x", 'invalid count (x): value must be either "all" or an integer: invalid syntax'),
    ("", "EOF"),
    ("all,", 'invalid count (): value must be either "all" or an integer: invalid syntax'),
    (",", 'invalid count (): value must be either "all" or an integer: invalid syntax'),
    ('""', 'invalid count (): value must be either "all" or an integer: invalid syntax'),
    (" 1", 'invalid count ( 1): value must be either "all" or an integer: invalid syntax'),
    ("1_0", 'invalid count (1_0): value must be either "all" or an integer: invalid syntax'),
    ("99999999999999999999", ("invalid count (99999999999999999999): value must be either "
                             '"all" or an integer: value out of range')),
    ("all,all", "gpu request key 'all' can be specified only once"),
    ("all,count=1", "gpu request key 'count' can be specified only once"),
    ("driver=a,driver=b", "gpu request key 'driver' can be specified only once"),
    ("foo=bar", "unexpected key 'foo' in 'foo=bar'"),
    ('a"b', 'parse error on line 1, column 2: bare " in non-quoted-field'),
    ('ab"', 'parse error on line 1, column 3: bare " in non-quoted-field'),
    ('é"', 'parse error on line 1, column 3: bare " in non-quoted-field'),  # byte columns
    ('"abc"x', 'parse error on line 1, column 5: extraneous or missing " in quoted-field'),
    ('"abc', 'parse error on line 1, column 5: extraneous or missing " in quoted-field'),
    ('"a\nb"x', ('record on line 1; parse error on line 2, column 2: '
                'extraneous or missing " in quoted-field')),
    ('options="a', 'parse error on line 1, column 9: bare " in non-quoted-field'),
    ("options=", "failed to read gpu options: EOF"),
    ('"options=a""b"', ('failed to read gpu options: parse error on line 1, column 2: '
                       'bare " in non-quoted-field')),
]


@pytest.mark.parametrize("value, message", INVALID, ids=[repr(v) for v, _ in INVALID])
def test_parse_gpus_rejects_like_docker(value: str, message: str) -> None:
    with pytest.raises(GpuSpecError) as info:
        parse_gpus(value)
    assert str(info.value) == message


@pytest.mark.parametrize("value, names", [("all", False), ("2", False),
                                          ('"device=0,1"', True), ("device=0,2", True)],
                         ids=["all", "count", "device-list", "device-and-count"])
def test_names_devices(value: str, names: bool) -> None:
    assert parse_gpus(value).names_devices is names
