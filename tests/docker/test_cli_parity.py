"""The launcher reads ``--gpus``, ``-p``, ``-v``, ``--ulimit`` and the other run flags exactly as
the real Docker CLI does: for each row, ``docker create`` records HostConfig in the real engine
and we compare it with the plan; values the CLI (or the daemon) rejects, the launcher rejects
too, with exit 2 and the value echoed.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from launcher._cli import main
from launcher._flags import parse_publish, parse_volume, port_maps
from launcher._gpus import parse_gpus
from tests.conftest import TEST_LABEL, tool_path, unique
from tests.docker.conftest import STANDIN

pytestmark = [pytest.mark.docker]
# Any local image does (the containers are created, never started): the stand-in, by its own
# name; it is never tagged python:3.11-slim (scripts/standin-images).
IMAGE = STANDIN


@pytest.fixture(scope="module")
def docker_cli(docker_client: Any, standin_image: str) -> Iterator[str]:
    yield tool_path("docker", "scripts/setup --engine")


def docker_create(cli: str, flags: Sequence[str]) -> tuple[dict[str, Any] | None, str]:
    """``docker create FLAGS`` → (its inspect document, or None and the CLI's error line)."""
    name = unique("glt-parity")
    label = [f"--label={k}={v}" for k, v in TEST_LABEL.items()]
    proc = subprocess.run([cli, "create", *label, "--name", name, *flags, IMAGE, "true"],
                          capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        return None, proc.stderr.splitlines()[0] if proc.stderr else ""
    try:
        inspect = subprocess.run([cli, "inspect", name], capture_output=True, text=True,
                                 timeout=60, check=True)
        return json.loads(inspect.stdout)[0], ""
    finally:
        subprocess.run([cli, "rm", "-f", "-v", name], capture_output=True, timeout=60,
                       check=False)


def launcher_rejects(flag: str, value: str, capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``launcher up --dry-run FLAG VALUE`` in-process; assert exit 2 and return line 1."""
    code = main(["up", "--dry-run", "--json", "--no-probe", flag, value])
    out, err = capsys.readouterr()
    assert (code, out) == (2, ""), err
    lines = err.splitlines()
    assert lines[1].startswith("hint: ")
    return lines[0]


GPUS: list[tuple[str, list[str]]] = [
    ("all", ["all"]),
    ("count", ["2"]),
    ("count-key", ["count=all"]),
    ("count-zero", ["0"]),
    ("minus-one", ["-1"]),
    ("plus-one", ["+1"]),
    ("device-quoted-list", ['"device=0,2"']),
    ("device-unquoted-list", ["device=0,2"]),
    ("device-uuid", ["device=GPU-3a2c7e4f"]),
    ("device-empty", ["device="]),
    ("driver-caps-options", ['driver=nvidia,"capabilities=compute,utility","options=a=b,c"']),
    ("capabilities-empty", ["capabilities="]),
    ("options-quoted-quote", ['"options=""a"""']),
    ("two-counts", ["1,2"]),
    ("first-record-only", ["all\n1"]),
    ("repeated", ["all", "1"]),
    ("repeated-three", ["all", '"device=0,1"', "driver=cdi"]),
]


@pytest.mark.parametrize("values", [v for _, v in GPUS], ids=[i for i, _ in GPUS])
def test_gpus_device_requests_match_docker_create(docker_cli: str, values: list[str]) -> None:
    inspect, error = docker_create(docker_cli, [f"--gpus={v}" for v in values])
    assert inspect is not None, error
    assert inspect["HostConfig"]["DeviceRequests"] == [parse_gpus(v).to_api() for v in values]


GPUS_INVALID = [
    ("bad-count", "count=x"),
    ("empty", ""),
    ("trailing-comma", "all,"),
    ("space", " 1"),
    ("out-of-range", "99999999999999999999"),
    ("repeated-key", "all,all"),
    ("unknown-key", "foo=bar"),
    ("bare-quote", 'a"b'),
    ("unterminated", '"abc'),
    ("extraneous-quote", '"abc"x'),
    ("empty-options", "options="),
]


@pytest.mark.parametrize("value", [v for _, v in GPUS_INVALID], ids=[i for i, _ in GPUS_INVALID])
def test_gpus_rejected_by_both(docker_cli: str, value: str,
                               capsys: pytest.CaptureFixture[str]) -> None:
    inspect, docker_error = docker_create(docker_cli, [f"--gpus={value}"])
    assert inspect is None, f"docker accepted --gpus {value!r}"
    ours = launcher_rejects("--gpus", value, capsys)
    # Same text as docker's (docker quotes the value Go-style, so compare where that is plain).
    if '"' not in value and "\n" not in value:
        assert ours == f"launcher: error: {docker_error}"
    else:
        assert ours.startswith("launcher: error: invalid argument ")
        assert ours.split('" flag: ', 1)[1] == docker_error.split('" flag: ', 1)[1]


PUBLISH = [
    ("container-only", ["8000"]),
    ("host-container", ["8080:8000"]),
    ("loopback", ["127.0.0.1:8080:8000"]),
    ("ephemeral-on-ip", ["127.0.0.1::8000"]),
    ("udp", ["8000/udp"]),
    ("range", ["8080-8081:8000-8001"]),
    ("ipv6", ["[::1]:8080:8000"]),
    ("long-syntax", ["target=8000,published=8080,protocol=udp"]),
    ("two-for-one-port", ["127.0.0.1:8080:8000", "8081:8000"]),
]


@pytest.mark.parametrize("values", [v for _, v in PUBLISH], ids=[i for i, _ in PUBLISH])
def test_publish_matches_docker_create(docker_cli: str, values: list[str]) -> None:
    inspect, error = docker_create(docker_cli, [f"--publish={v}" for v in values])
    assert inspect is not None, error
    exposed, bindings = port_maps([m for v in values for m in parse_publish(v)])
    assert inspect["HostConfig"]["PortBindings"] == bindings
    assert inspect["Config"]["ExposedPorts"] == exposed


PUBLISH_INVALID = ["x", "8080:x", "70000", "8080:8000/foo", "", "1.2.3:80:80",
                   "8080-8082:8000-8001", "target=8000,published"]


@pytest.mark.parametrize("value", PUBLISH_INVALID, ids=[v or "empty" for v in PUBLISH_INVALID])
def test_publish_rejected_by_both(docker_cli: str, value: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    inspect, docker_error = docker_create(docker_cli, [f"--publish={value}"])
    assert inspect is None, f"docker accepted -p {value!r}"
    ours = launcher_rejects("--publish", value, capsys)
    assert ours == (f'launcher: error: invalid argument "{value}" for "--publish" flag: '
                    f"{docker_error.removeprefix('docker: ')}")


@pytest.fixture
def volume_names(docker_client: Any) -> Iterator[list[str]]:
    """Named volumes the rows make `docker create` create; removed afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        for found in docker_client.volumes.list(filters={"name": name}):
            if found.name == name:
                found.remove(force=True)


@pytest.mark.parametrize("row", ["named", "bind-ro", "named-with-modes", "relative-bind",
                                 "anonymous"])
def test_volumes_match_docker_create(docker_cli: str, row: str, tmp_path: Path,
                                     volume_names: list[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    volume = unique("glt-parity-vol")
    volume_names.append(volume)
    (tmp_path / "host").mkdir()
    monkeypatch.chdir(tmp_path)  # relative binds resolve against the caller's directory
    value = {"named": f"{volume}:/models", "bind-ro": f"{tmp_path}/host:/data:ro",
             "named-with-modes": f"{volume}:/m:rw,z", "relative-bind": "./host:/x",
             "anonymous": "/scratch"}[row]
    inspect, error = docker_create(docker_cli, [f"--volume={value}"])
    assert inspect is not None, error
    parsed = parse_volume(value, str(tmp_path))
    if parsed.source:
        assert inspect["HostConfig"]["Binds"] == [parsed.bind]
    else:
        assert inspect["HostConfig"]["Binds"] is None
        assert inspect["Config"]["Volumes"] == {parsed.target: {}}


VOLUME_INVALID = ["", "glt-x:", "glt-parity-x:/m:bogus", "relative/path:/x", "/srv:rel",
                  "a:b:c:d"]


@pytest.mark.parametrize("value", VOLUME_INVALID, ids=[v or "empty" for v in VOLUME_INVALID])
def test_volumes_rejected_by_both(docker_cli: str, value: str, volume_names: list[str],
                                  capsys: pytest.CaptureFixture[str]) -> None:
    volume_names.append("glt-parity-x")
    inspect, _ = docker_create(docker_cli, [f"--volume={value}"])
    assert inspect is None, f"docker accepted -v {value!r}"
    assert launcher_rejects("--volume", value, capsys).startswith(
        f'launcher: error: invalid argument "{value}" for "--volume" flag: ')


def test_env_and_limits_match_docker_create(docker_cli: str, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    env_file = tmp_path / "env"
    env_file.write_bytes(b"\xef\xbb\xbfA=1\n  B= x \n#c\n\nGLT_UNSET_X\nGLT_SET\r\n")
    monkeypatch.setenv("GLT_SET", "from-shell")
    monkeypatch.delenv("GLT_UNSET_X", raising=False)
    monkeypatch.delenv("GLT_UNSET_Y", raising=False)
    flags = [f"--env-file={env_file}", "-e", "GLT_UNSET_Y", "-e", "A=2", "-e", "C==d",
             "--memory=1.5g", "--cpus=1.5", "--shm-size=256m", "--restart=on-failure:3"]
    inspect, error = docker_create(docker_cli, flags)
    assert inspect is not None, error
    assert main(["up", "--dry-run", "--json", *flags]) == 0
    create = json.loads(capsys.readouterr().out)["create"]
    ours = [e for e in create["Env"] if not e.startswith("DEVICE=")]
    theirs = inspect["Config"]["Env"]
    assert ours == ["A=1", "B= x ", "GLT_SET=from-shell", "GLT_UNSET_Y", "A=2", "C==d"]
    # The image's own env follows; docker 28 does not keep a bare KEY's place among the others
    # (it varies run to run), so compare the entries, and the order of the values set twice.
    assert sorted(theirs[: len(ours)]) == sorted(ours)
    assert theirs.index("A=1") < theirs.index("A=2")
    for key in ("Memory", "NanoCpus", "ShmSize", "RestartPolicy"):
        assert create["HostConfig"][key] == inspect["HostConfig"][key], key


def test_engine_accepts_the_plan_create_body(docker_client: Any, standin_image: str,
                                             volume_names: list[str],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """The exact body `up` will send, created in the real engine (API 1.41), reads back as
    planned: hardened, limited, labelled, with the named volumes."""
    name = unique("glt-parity-plan")
    volume_names += [f"{name}-models", f"{name}-data"]
    assert main(["up", "--dry-run", "--json", "--name", name, "--memory", "1g"]) == 0
    body = json.loads(capsys.readouterr().out)["create"]
    body["Image"] = IMAGE  # the service image is not built here; the body is what is checked
    body["Labels"] |= TEST_LABEL
    docker_client.api.create_container_from_config(body, name=name)
    try:
        info = docker_client.api.inspect_container(name)
        host = info["HostConfig"]
        for key in ("PortBindings", "Binds", "Memory", "NanoCpus", "ShmSize", "Ulimits",
                    "RestartPolicy", "ReadonlyRootfs", "Tmpfs", "SecurityOpt", "CapDrop",
                    "PidsLimit"):
            assert host[key] == body["HostConfig"][key], key
        assert info["Config"]["User"] == "10001:10001"
        assert info["Config"]["Labels"]["org.gpu-launcher.plan"] == (
            body["Labels"]["org.gpu-launcher.plan"])
        assert {m["Name"] for m in info["Mounts"]} == {f"{name}-models", f"{name}-data"}
    finally:
        docker_client.api.remove_container(name, force=True, v=True)


SIZES = ["1g", "1 g", "1gib", "1KB", "1e3", ".5g", "1.g", "10M", "1Gb", "5b", "1.9999",
         "1.5.5g", "1ib", " 1g", "1g ", "x", "1gbb"]


@pytest.mark.parametrize("value", SIZES)
def test_sizes_match_docker_create(docker_cli: str, value: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    inspect, docker_error = docker_create(docker_cli, [f"--shm-size={value}"])
    if inspect is None:
        ours = launcher_rejects("--shm-size", value, capsys)
        assert ours == f"launcher: error: {docker_error}"
        return
    assert main(["up", "--dry-run", "--json", f"--shm-size={value}"]) == 0, value
    assert json.loads(capsys.readouterr().out)["create"]["HostConfig"]["ShmSize"] == (
        inspect["HostConfig"]["ShmSize"])


CPUS = ["1.5", "0.001", "3/2", "1e-3", "0.0000000001", "x"]


@pytest.mark.parametrize("value", CPUS)
def test_cpus_match_docker_create(docker_cli: str, value: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    inspect, docker_error = docker_create(docker_cli, [f"--cpus={value}"])
    if inspect is None:
        assert launcher_rejects("--cpus", value, capsys) == f"launcher: error: {docker_error}"
        return
    assert main(["up", "--dry-run", "--json", f"--cpus={value}"]) == 0, value
    assert json.loads(capsys.readouterr().out)["create"]["HostConfig"]["NanoCpus"] == (
        inspect["HostConfig"]["NanoCpus"])


RESTARTS = ["no", "always", "unless-stopped", "on-failure", "on-failure:3", "on-failure:", "",
            "bogus", "always:3", "on-failure:x", ":3", "on-failure:-1"]


@pytest.mark.parametrize("value", RESTARTS, ids=[v or "empty" for v in RESTARTS])
def test_restart_matches_docker_create(docker_cli: str, value: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    inspect, docker_error = docker_create(docker_cli, [f"--restart={value}"])
    if inspect is None:
        ours = launcher_rejects("--restart", value, capsys)
        reason = docker_error.removeprefix("docker: ").removeprefix("Error response from daemon: ")
        assert ours == f'launcher: error: invalid argument "{value}" for "--restart" flag: {reason}'
        return
    assert main(["up", "--dry-run", "--json", f"--restart={value}"]) == 0, value
    assert json.loads(capsys.readouterr().out)["create"]["HostConfig"]["RestartPolicy"] == (
        inspect["HostConfig"]["RestartPolicy"])


ULIMITS: list[tuple[str, list[str]]] = [
    ("soft-only", ["nofile=1024"]),
    ("soft-hard", ["nofile=1024:2048"]),
    ("unlimited", ["memlock=-1"]),
    ("soft-under-unlimited", ["memlock=1024:-1"]),
    ("replaces-default", ["stack=8388608"]),
    ("plus-sign", ["nofile=+5"]),
    ("negative-under-unlimited", ["nofile=-2:-1"]),
    ("int64-max", ["memlock=9223372036854775807"]),
    ("repeated-last-wins-sorted", ["stack=1", "nofile=1", "nofile=2:3", "core=0"]),
]


@pytest.mark.parametrize("values", [v for _, v in ULIMITS], ids=[i for i, _ in ULIMITS])
def test_ulimits_match_docker_create(docker_cli: str, values: list[str],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    flags = [f"--ulimit={v}" for v in values]
    inspect, error = docker_create(docker_cli, flags)
    assert inspect is not None, error
    assert main(["up", "--dry-run", "--json", *flags]) == 0
    ours = json.loads(capsys.readouterr().out)["create"]["HostConfig"]["Ulimits"]
    given = {v.partition("=")[0] for v in values}
    # the plan adds its defaults (memlock, stack) for the names not given; the rest is docker's
    assert [u for u in ours if u["Name"] in given] == inspect["HostConfig"]["Ulimits"]
    assert {u["Name"] for u in ours} == given | {"memlock", "stack"}


ULIMIT_INVALID = ["", "nofile", "bogus=1", "NOFILE=1", "=1", "nofile=x", "nofile=", "nofile=5:",
                  "nofile=x:y", "nofile= 1", "nofile=1_000", "nofile=0x10",
                  "nofile=99999999999999999999", "nofile=1:2:3", "nofile=2048:1024",
                  "memlock=-1:1024"]


@pytest.mark.parametrize("value", ULIMIT_INVALID, ids=[v or "empty" for v in ULIMIT_INVALID])
def test_ulimits_rejected_by_both(docker_cli: str, value: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    inspect, docker_error = docker_create(docker_cli, [f"--ulimit={value}"])
    assert inspect is None, f"docker accepted --ulimit {value!r}"
    ours = launcher_rejects("--ulimit", value, capsys)
    assert ours == f"launcher: error: {docker_error.removeprefix('docker: ')}"


def test_engine_info_matches_docker_info_and_version(docker_cli: str) -> None:
    from launcher._engine import connect

    def cli(*argv: str) -> str:
        return subprocess.run([docker_cli, *argv], capture_output=True, text=True, timeout=60,
                              check=True).stdout.strip()

    engine = connect()
    try:
        info = engine.info()  # the API version: the one connect negotiated, not asked again
    finally:
        engine.close()
    assert (info.server_version, info.api_version, info.engine_id, info.cgroup_driver) == (
        cli("version", "--format", "{{.Server.Version}}"),
        cli("version", "--format", "{{.Server.APIVersion}}"),
        cli("info", "--format", "{{.ID}}"), cli("info", "--format", "{{.CgroupDriver}}"))
