"""Docker-style run flags parsed like the Docker CLI (rows checked against docker 28.2 + engine
20.10); where the CLI passes a value on and the daemon refuses it, we refuse it up front."""

from __future__ import annotations

from typing import Any

import pytest

from launcher._flags import (
    FlagError,
    PortMapping,
    parse_env,
    parse_env_file,
    parse_publish,
    parse_restart,
    parse_timeout,
    parse_volume,
    port_maps,
    validate_name,
)
from tests.conftest import error_text

PM = PortMapping
PUBLISH = [
    ("8000", [PM("8000/tcp", "", "")]),
    ("8080:8000", [PM("8000/tcp", "", "8080")]),
    ("127.0.0.1:8080:8000", [PM("8000/tcp", "127.0.0.1", "8080")]),
    ("127.0.0.1::8000", [PM("8000/tcp", "127.0.0.1", "")]),
    ("8000/udp", [PM("8000/udp", "", "")]),
    ("8080:8000/SCTP", [PM("8000/sctp", "", "8080")]),
    ("0.0.0.0:8080:8000/tcp", [PM("8000/tcp", "0.0.0.0", "8080")]),
    ("8080-8081:8000-8001", [PM("8000/tcp", "", "8080"), PM("8001/tcp", "", "8081")]),
    ("8000-8001", [PM("8000/tcp", "", ""), PM("8001/tcp", "", "")]),
    ("9000-9005:8000", [PM("8000/tcp", "", "9000-9005")]),
    ("[::1]:8080:8000", [PM("8000/tcp", "::1", "8080")]),
    ("::1:8080:8000", [PM("8000/tcp", "::1", "8080")]),
    ("target=8000,published=8080", [PM("8000/tcp", "", "8080")]),
    ("target=8000,published=8080,protocol=udp,mode=host", [PM("8000/udp", "", "8080")]),
]


@pytest.mark.parametrize("value, expected", PUBLISH, ids=[v for v, _ in PUBLISH])
def test_parse_publish(value: str, expected: list[PortMapping]) -> None:
    assert parse_publish(value) == expected


PUBLISH_ERRORS = [
    ("", "no port specified: <empty>"),
    ("x", "invalid containerPort: x"),
    ("8080:x", "invalid containerPort: x"),
    ("70000", "invalid containerPort: 70000"),
    ("x:8000", "invalid hostPort: x"),
    ("8080:8000/foo", "invalid proto: foo"),
    ("1.2.3:80:80", "invalid IP address: 1.2.3"),
    ("[::1:80:80", "invalid IP address [::1: missing ']' in address"),
    ("8080-8082:8000-8001",
     "invalid ranges specified for container and host Ports: 8000-8001 and 8080-8082"),
    ("8080:8000-8001",
     "invalid ranges specified for container and host Ports: 8000-8001 and 8080"),
    ("target=8000,published",
     "invalid publish opts format (should be name=value but got 'published')"),
    ("published=8080", "no port specified: 8080:/tcp<empty>"),
]


@pytest.mark.parametrize("value, message", PUBLISH_ERRORS, ids=[v or "empty" for v, _ in PUBLISH_ERRORS])
def test_parse_publish_rejects(value: str, message: str) -> None:
    assert error_text(FlagError, parse_publish, value) == message


def test_port_maps_merge_bindings_of_one_port() -> None:
    mappings = parse_publish("127.0.0.1:8080:8000") + parse_publish("8081:8000")
    assert port_maps(mappings) == (
        {"8000/tcp": {}},
        {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"},
                      {"HostIp": "", "HostPort": "8081"}]},
    )


VOLUMES = [
    ("glt-x:/models", "glt-x:/models", True),
    ("/srv/data:/data:ro", "/srv/data:/data:ro", False),
    ("glt-x:/m:rw,z", "glt-x:/m:rw,z", True),
    ("./d:/x", "/work/d:/x", False),
    ("../d:/x/", "/d:/x", False),
    ("/data", "/data", False),
]


@pytest.mark.parametrize("value, bind, named", VOLUMES, ids=[v for v, _, _ in VOLUMES])
def test_parse_volume(value: str, bind: str, named: bool) -> None:
    volume = parse_volume(value, cwd="/work")
    assert (volume.bind, volume.is_named) == (bind, named)


VOLUME_ERRORS = [
    ("", "invalid empty volume spec"),
    ("glt-x:", "invalid spec: glt-x:: empty section between colons"),
    ("a:b:c:d", "invalid volume specification: 'a:b:c:d'"),
    ("/srv:rel", ("invalid volume specification: '/srv:rel': "
                 "invalid mount path: 'rel' mount path must be absolute")),
    ("glt-x:/m:bogus", "invalid mode: bogus"),
    ("relative/path:/x", ('create relative/path: "relative/path" includes invalid characters '
                         'for a local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are '
                         "allowed. If you intended to pass a host directory, use absolute path")),
]


@pytest.mark.parametrize("value, message", VOLUME_ERRORS, ids=[v or "empty" for v, _ in VOLUME_ERRORS])
def test_parse_volume_rejects(value: str, message: str) -> None:
    assert error_text(FlagError, parse_volume, value, cwd="/work") == message


@pytest.mark.parametrize("value, expected", [
    ("A=1", "A=1"), ("A=", "A="), ("A==b", "A==b"), ("HOME", "HOME=/root"), ("UNSET", "UNSET"),
], ids=["pair", "empty-value", "equals-in-value", "from-environment", "unset-passed-on"])
def test_parse_env(value: str, expected: str) -> None:
    assert parse_env(value, {"HOME": "/root"}) == expected


def test_parse_env_rejects_a_missing_name() -> None:
    with pytest.raises(FlagError, match="^invalid environment variable: =x$"):
        parse_env("=x", {})


def test_parse_env_file_like_docker() -> None:
    data = b"A=1\n  B= x \n#c\n\nUNSET_X\nHOME\r\n\xef\xbb\xbfC=2\n"
    # the same file through docker 28.2 gave exactly these (the BOM counts only on line 1)
    assert parse_env_file(b"\xef\xbb\xbf" + data, "f", {"HOME": "/root"}) == [
        "A=1", "B= x ", "HOME=/root", "\ufeffC=2"]


@pytest.mark.parametrize("data, message", [
    (b"A B=1\n", "invalid env file (f): variable 'A B' contains whitespaces"),
    (b"=1\n", "invalid env file (f): no variable name on line '=1'"),
    (b"A=1\nB=\xff\n", "invalid env file (f): contains invalid utf8 bytes at line 2"),
], ids=["space-in-name", "no-name", "not-utf8"])
def test_parse_env_file_rejects(data: bytes, message: str) -> None:
    assert error_text(FlagError, parse_env_file, data, "f", {}) == message


@pytest.mark.parametrize("value, expected", [
    ("no", {"Name": "no", "MaximumRetryCount": 0}),
    ("always", {"Name": "always", "MaximumRetryCount": 0}),
    ("unless-stopped", {"Name": "unless-stopped", "MaximumRetryCount": 0}),
    ("on-failure", {"Name": "on-failure", "MaximumRetryCount": 0}),
    ("on-failure:3", {"Name": "on-failure", "MaximumRetryCount": 3}),
    ("on-failure:", {"Name": "on-failure", "MaximumRetryCount": 0}),
    ("", {"Name": "", "MaximumRetryCount": 0}),
], ids=lambda v: v if isinstance(v, str) else "")
def test_parse_restart(value: str, expected: dict[str, Any]) -> None:
    assert parse_restart(value) == expected


@pytest.mark.parametrize("value, message", [
    ("bogus", "invalid restart policy 'bogus'"),
    ("always:3", "maximum retry count cannot be used with restart policy 'always'"),
    ("on-failure:x", "invalid restart policy format: maximum retry count must be an integer"),
    (":3", "invalid restart policy format: no policy provided before colon"),
    ("on-failure:-1", "maximum retry count cannot be negative"),
], ids=["unknown", "count-on-always", "count-not-int", "no-policy", "negative"])
def test_parse_restart_rejects(value: str, message: str) -> None:
    assert error_text(FlagError, parse_restart, value) == message


@pytest.mark.parametrize("value, expected", [
    ("180", 180.0), ("0.5", 0.5), ("1e3", 1000.0),
], ids=["whole", "fraction", "exponent"])
def test_parse_timeout(value: str, expected: float) -> None:
    assert parse_timeout(value) == expected


@pytest.mark.parametrize("value, message", [
    ("-5", "must be a number of seconds above 0"),
    ("0", "must be a number of seconds above 0"),
    ("inf", "must be a number of seconds above 0"),
    ("nan", "must be a number of seconds above 0"),
    ("3m", "not a number of seconds"),
], ids=["negative", "zero", "inf", "nan", "unit"])
def test_parse_timeout_rejects(value: str, message: str) -> None:
    assert error_text(FlagError, parse_timeout, value) == message


@pytest.mark.parametrize("value", ["a", "-x", "a b", "a/b", ""], ids=["short", "dash", "space", "slash", "empty"])
def test_validate_name_rejects(value: str) -> None:
    assert error_text(FlagError, validate_name, value) == (
        f"Invalid container name ({value}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
