"""The lifecycle's pure decisions (launcher/_lifecycle.py): keep or replace, GPU fallback
policy, readiness, status rows, remote engines. Table tests, exact text."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pytest

from launcher import _lifecycle as lifecycle
from launcher._engine import is_remote_engine
from launcher._engine_errors import DriverTooOld, MemlockRefused, classify
from launcher._errors import LauncherError
from launcher._gpus import parse_gpus
from launcher._probe import GpuInfo, Probe, parse_probe_json
from launcher.cmd_status import (
    format_replicas,
    format_status,
    gpus_assigned,
    parse_timestamp,
    readyz_replicas,
    readyz_url,
    status_row,
)

MANAGED = {"org.gpu-launcher.managed": "true", "org.gpu-launcher.name": "svc",
           "org.gpu-launcher.plan": "aaaa"}


def container(labels: dict[str, str] | None = None, image: str = "sha256:1",
              running: bool = True, status: str = "running") -> dict[str, Any]:
    return {"Id": "c1", "Image": image, "Config": {"Labels": MANAGED if labels is None else labels},
            "State": {"Running": running, "Status": status}}


@pytest.mark.parametrize(("existing", "expected"), [
    (None, lifecycle.Decision("create", "no container svc")),
    (container(), lifecycle.Decision("keep", "already running with the same plan")),
    (container({**MANAGED, "org.gpu-launcher.plan": "bbbb"}),
     lifecycle.Decision("replace", "the plan changed (bbbb → aaaa)")),
    (container(image="sha256:0"), lifecycle.Decision("replace", "the image was rebuilt")),
    (container(running=False, status="exited"), lifecycle.Decision("replace", "it is exited")),
], ids=["none", "same-plan-running", "plan-changed", "image-rebuilt", "exited"])
def test_decide(existing: dict[str, Any] | None, expected: lifecycle.Decision) -> None:
    assert lifecycle.decide("svc", existing, "aaaa", "sha256:1") == expected


def test_decide_never_touches_a_container_launcher_did_not_create() -> None:
    with pytest.raises(LauncherError) as exc:
        lifecycle.decide("svc", container({}), "aaaa", "sha256:1")
    assert exc.value.message == "a container named svc exists and launcher did not create it"
    assert exc.value.hint == "choose another --name, or remove it: docker rm -f svc"


@pytest.mark.parametrize(("binds", "expected"), [
    (["svc-models:/models", "svc-data:/data"], ["svc-models", "svc-data"]),
    (["/srv/models:/models:ro", "cache:/cache:rw"], ["cache"]),
    ([], []),
], ids=["defaults", "bind-and-named", "none"])
def test_named_volumes(binds: list[str], expected: list[str]) -> None:
    assert lifecycle.named_volumes(binds) == expected


@pytest.mark.parametrize(("runtimes", "cdi", "expected"), [
    (["io.containerd.runc.v2", "nvidia", "runc"], [], None),
    (["runc"], ["/etc/cdi", "/var/run/cdi"], None),
    (["io.containerd.runc.v2", "runc"], [],
     ("the Docker engine has no NVIDIA runtime (runtimes: io.containerd.runc.v2, runc) "
     "and no CDI spec directories")),
    ([], [], ("the Docker engine has no NVIDIA runtime (runtimes: none) and no CDI spec "
             "directories")),
], ids=["nvidia-runtime", "cdi", "runc-only", "nothing"])
def test_gpu_runtime_missing(runtimes: list[str], cdi: list[str], expected: str | None) -> None:
    assert lifecycle.gpu_runtime_missing(runtimes, cdi) == expected


@pytest.mark.parametrize(("gpus", "require", "expected"), [
    (["all"], False, True),
    (["2"], False, True),
    (["count=1,capabilities=utility"], False, True),
    (["all"], True, False),
    (['"device=0,1"'], False, False),
    (["device=GPU-3a2b"], False, False),
    (["all", "device=1"], False, False),
    ([], False, False),
], ids=["all", "count", "count-caps", "require-gpu", "device-list", "device-uuid",
        "all-plus-device", "no-gpus"])
def test_may_fall_back_only_for_all_or_counts(gpus: list[str], require: bool,
                                              expected: bool) -> None:
    assert lifecycle.may_fall_back([parse_gpus(g) for g in gpus], require) is expected


RUNNING = {"Status": "running", "Running": True}


@pytest.mark.parametrize(("state", "restarts", "readyz", "healthcheck", "elapsed", "expected"), [
    (RUNNING, 0, 200, False, 1.0, lifecycle.Verdict("ready")),
    (RUNNING, 0, 503, False, 1.0, lifecycle.Verdict("wait")),
    (RUNNING, 0, None, False, 1.0, lifecycle.Verdict("wait")),
    ({**RUNNING, "Health": {"Status": "healthy"}}, 0, None, True, 1.0, lifecycle.Verdict("ready")),
    ({**RUNNING, "Health": {"Status": "starting"}}, 0, None, True, 1.0, lifecycle.Verdict("wait")),
    ({**RUNNING, "Health": {"Status": "unhealthy"}}, 0, 503, False, 1.0,
     lifecycle.Verdict("failed", "the container's healthcheck reports unhealthy")),
    ({"Status": "exited", "ExitCode": 2}, 0, None, False, 1.0,
     lifecycle.Verdict("failed", "the container exited with code 2")),
    ({"Status": "restarting", "ExitCode": 1}, 2, None, False, 1.0,
     lifecycle.Verdict("failed", "the container exited (code 1) and was restarted 2 time(s)")),
    (RUNNING, 0, 503, False, 30.0, lifecycle.Verdict("failed", "not ready after 30s")),
], ids=["readyz-200", "readyz-503", "no-answer", "healthy", "health-starting", "unhealthy",
        "exited", "restarted", "timeout"])
def test_judge_readiness(state: dict[str, Any], restarts: int, readyz: int | None,
                         healthcheck: bool, elapsed: float, expected: lifecycle.Verdict) -> None:
    assert lifecycle.judge_readiness(state, restarts, 0, readyz, healthcheck, elapsed, 30.0) == expected


@pytest.mark.parametrize(("ports", "expected"), [
    ({"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8000"}]}, "http://127.0.0.1:8000"),
    ({"8000/tcp": [{"HostIp": "0.0.0.0", "HostPort": "49153"}, {"HostIp": "::",
                                                                 "HostPort": "49153"}]},
     "http://127.0.0.1:49153"),
    ({"8000/tcp": [{"HostIp": "::1", "HostPort": "8080"}]}, "http://[::1]:8080"),
    ({"8000/tcp": None}, None),
    ({"9000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "9000"}]}, None),
    (None, None),
], ids=["loopback", "any-address", "ipv6", "exposed-not-published", "other-port", "no-ports"])
def test_service_url(ports: dict[str, Any] | None, expected: str | None) -> None:
    assert lifecycle.service_url(ports) == expected


def test_curl_example_is_one_digits_row_to_predict() -> None:
    line = lifecycle.curl_example("http://127.0.0.1:8000")
    head, _, body = line.partition(" -d ")
    assert head == "curl -s http://127.0.0.1:8000/predict"
    rows = json.loads(body.strip("'"))["inputs"]
    assert len(rows) == 1 and len(rows[0]) == 64


CURL_EXAMPLES = [
    # width, the example
    (3, "curl -s http://127.0.0.1:8080/predict -d '{\"inputs\":[[0,0,0]]}'"),
    (1, "curl -s http://127.0.0.1:8080/predict -d '{\"inputs\":[[0]]}'"),
    (784, ("python3 -c 'import json; print(json.dumps({\"inputs\": [[0.0] * 784]}))' | "
          "curl -s http://127.0.0.1:8080/predict -d @-")),
    (None, "curl -s http://127.0.0.1:8080/  # says the model's input_width"),
]


@pytest.mark.parametrize("width, expected", CURL_EXAMPLES, ids=[str(w) for w, _ in CURL_EXAMPLES])
def test_curl_example_carries_a_row_of_the_served_width(width: int | None, expected: str) -> None:
    assert lifecycle.curl_example("http://127.0.0.1:8080", width) == expected


def test_curl_example_of_an_object_predictor_sends_its_example() -> None:
    line = lifecycle.curl_example("http://127.0.0.1:8080", None, {"inputs": ["it's a text"]})
    assert line == ("curl -s http://127.0.0.1:8080/predict -d "
                    "'{\"inputs\":[\"it'\"'\"'s a text\"]}'")


def test_a_generated_wide_row_has_the_width() -> None:
    import subprocess

    line = lifecycle.curl_example("http://127.0.0.1:8080", 1000)
    script = line.partition(" | ")[0].removeprefix("python3 -c ").strip("'")
    out = subprocess.run(["python3", "-c", script], capture_output=True, text=True, check=True,
                         timeout=30).stdout
    assert [len(r) for r in json.loads(out)["inputs"]] == [1000]


@pytest.mark.parametrize(("docker_host", "expected"), [
    (None, False), ("", False), ("unix:///var/run/docker.sock", False),
    ("unix:///tmp/missing.sock", False), ("npipe:////./pipe/docker_engine", False),
    ("tcp://127.0.0.1:2375", False), ("tcp://localhost:2376", False),
    ("tcp://10.0.0.5:2376", True), ("ssh://ops@gpu-box", True),
], ids=["unset", "empty", "unix", "unix-missing", "npipe", "tcp-loopback", "tcp-localhost",
        "tcp-remote", "ssh"])
def test_is_remote_engine(docker_host: str | None, expected: bool) -> None:
    assert is_remote_engine(docker_host) is expected


UTC = timezone.utc


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-11-28T07:38:20.123456789Z", datetime(2026, 11, 28, 7, 38, 20, 123456, UTC)),
    ("2026-11-28T07:38:20Z", datetime(2026, 11, 28, 7, 38, 20, tzinfo=UTC)),
    ("2026-11-28T08:38:20.5+01:00", datetime(2026, 11, 28, 7, 38, 20, 500000, UTC)),
    ("0001-01-01T00:00:00Z", None),
    ("", None),
], ids=["nanoseconds", "whole-seconds", "offset", "zero-time", "empty"])
def test_parse_timestamp(text: str, expected: datetime | None) -> None:
    assert parse_timestamp(text) == expected


@pytest.mark.parametrize(("requests", "expected"), [
    (None, "none"),
    ([{"Count": -1, "DeviceIDs": None}], "all"),
    ([{"Count": 2, "DeviceIDs": None}], "2"),
    ([{"Count": 0, "DeviceIDs": ["0", "2"]}], "0,2"),
    ([{"Count": 1}, {"Count": 0, "DeviceIDs": ["GPU-1"]}], "1+GPU-1"),
], ids=["none", "all", "count", "devices", "two-requests"])
def test_gpus_assigned(requests: list[dict[str, Any]] | None, expected: str) -> None:
    assert gpus_assigned(requests) == expected


INSPECT = {
    "Name": "/svc",
    "RestartCount": 1,
    "Config": {"Image": "gpu-launcher/service:cpu-abc", "Labels": MANAGED},
    "State": {"Status": "running", "Running": True, "StartedAt": "2026-11-28T07:00:00.5Z",
              "Health": {"Status": "healthy"}},
    "NetworkSettings": {"Ports": {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8000"}]}},
    "HostConfig": {"DeviceRequests": None},
}
NOW = datetime(2026, 11, 28, 8, 5, 7, tzinfo=UTC)


def test_status_row() -> None:
    assert status_row(INSPECT, NOW) == {
        "name": "svc", "image": "gpu-launcher/service:cpu-abc", "state": "running",
        "health": "healthy", "replicas": None, "ports": ["127.0.0.1:8000->8000/tcp"],
        "gpus": "none", "uptime_seconds": 3906, "restarts": 1}


def test_status_row_of_a_stopped_container_has_no_uptime() -> None:
    stopped = {**INSPECT, "State": {"Status": "exited", "Running": False,
                                    "StartedAt": "2026-11-28T07:00:00Z"}}
    row = status_row(stopped, NOW)
    assert (row["state"], row["health"], row["uptime_seconds"]) == ("exited", "none", None)


@pytest.mark.parametrize(("uptime", "shown"), [
    (None, "-"), (42, "42s"), (427, "7m07s"), (3906, "1h05m"), (183600, "2d03h"),
], ids=["stopped", "seconds", "minutes", "hours", "days"])
def test_format_status(uptime: int | None, shown: str) -> None:
    row = {**status_row(INSPECT, NOW, [READY_CPU]), "uptime_seconds": uptime}
    assert format_status([row]).splitlines() == [
        "NAME  IMAGE                         STATE    HEALTH   REPLICAS   GPUS  UPTIME" + " " * (
            max(len(shown), 6) - 6) + "  PORTS",
        (f"svc   gpu-launcher/service:cpu-abc  running  healthy  1/1 ready  none  {shown.ljust(6)}"
        "  127.0.0.1:8000->8000/tcp"),
    ]


READY_CPU = {"device": "cpu", "state": "ready", "reason": None}
FAILED_GPU = {"device": "cuda:1", "state": "failed", "reason": "device error: CUDA error: x"}


@pytest.mark.parametrize(("body", "replicas", "shown"), [
    ({"status": "ready", "replicas": [{"replica": 0, **READY_CPU}]}, [READY_CPU], "1/1 ready"),
    ({"status": "ready", "replicas": [{"replica": 0, "device": "cuda:0", "state": "ready",
                                       "reason": None}, {"replica": 1, **FAILED_GPU}]},
     [{**READY_CPU, "device": "cuda:0"}, FAILED_GPU], "1/2 ready, 1 failed"),
    ({"status": "starting", "replicas": [{**READY_CPU, "state": "starting"}] * 2},
     [{**READY_CPU, "state": "starting"}] * 2, "0/2 ready, 2 starting"),
    ({"status": "starting", "replicas": []}, [], "-"),
    ({"status": "ready"}, None, "-"),
    ("<html>", None, "-"),
    (None, None, "-"),
], ids=["one-ready", "one-failed", "starting", "not-planned-yet", "older-service", "not-json",
        "no-answer"])
def test_replicas_from_readyz(body: Any, replicas: list[dict[str, Any]] | None,
                              shown: str) -> None:
    assert readyz_replicas(body) == replicas
    assert format_replicas(replicas) == shown


@pytest.mark.parametrize(("ports", "url"), [
    ({"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}, "http://127.0.0.1:8080/readyz"),
    ({"8000/tcp": [{"HostIp": "0.0.0.0", "HostPort": "80"}, {"HostIp": "::", "HostPort": "80"}]},
     "http://127.0.0.1:80/readyz"),
    ({"8000/tcp": [{"HostIp": "::1", "HostPort": "9"}]}, "http://[::1]:9/readyz"),
    ({"8000/tcp": None, "9000/tcp": [{"HostIp": "", "HostPort": "9000"}]}, None),
    ({}, None),
], ids=["loopback", "all-addresses", "ipv6", "not-published", "no-ports"])
def test_readyz_url_is_the_published_service_port(ports: dict[str, Any], url: str | None) -> None:
    assert readyz_url({**INSPECT, "NetworkSettings": {"Ports": ports}}) == url


def test_format_status_without_containers() -> None:
    assert format_status([]) == "no containers managed by launcher"


def test_parse_probe_json_round_trips_launcher_probe() -> None:
    probe = Probe("580.65.06", (13, 0), (GpuInfo(0, "GPU-1", "NVIDIA H100 80GB HBM3", 85899345920,
                                                 (9, 0), False),), warnings=("w",))
    assert parse_probe_json(json.dumps(probe.to_json())) == probe
    none = Probe(None, None, (), reason="NVML library not found")
    assert parse_probe_json(json.dumps(none.to_json())) == none
    # A container's log: stderr lines before and after the indented JSON.
    log = ("launcher: no GPUs: NVML library not found\n" + json.dumps(none.to_json(), indent=2)
           + "\nlauncher: warning: {odd}\n")
    assert parse_probe_json(log) == none


def test_parse_probe_json_rejects_other_output() -> None:
    with pytest.raises(LauncherError) as exc:
        parse_probe_json("Traceback (most recent call last)")
    assert exc.value.message.startswith("the remote probe printed no probe JSON (")
    assert exc.value.hint == "skip the probe with --no-probe and pass --gpus as you need"


@pytest.mark.parametrize(("message", "expected"), [
    (("starting container 49fc: failed to create shim task: OCI runtime create failed: runc "
     "create failed: unable to start container process: error during container init: error "
     "setting rlimits for ready process: error setting rlimit type 8: operation not permitted: "
     "unknown"), True),
    ("error setting rlimit type 7: operation not permitted", False),
    ("port is already allocated", False),
], ids=["memlock", "nofile", "other"])
def test_memlock_refused(message: str, expected: bool) -> None:
    assert isinstance(classify(message, "starting container"), MemlockRefused) is expected


def test_with_memlock_caps_only_memlock_and_keeps_the_plan_label() -> None:
    body = {"Labels": MANAGED, "HostConfig": {"Ulimits": [
        {"Name": "memlock", "Soft": -1, "Hard": -1},
        {"Name": "stack", "Soft": 67108864, "Hard": 67108864}], "ShmSize": 1}}
    assert lifecycle.with_memlock(body, 8388608) == {"Labels": MANAGED, "HostConfig": {"Ulimits": [
        {"Name": "memlock", "Soft": 8388608, "Hard": 8388608},
        {"Name": "stack", "Soft": 67108864, "Hard": 67108864}], "ShmSize": 1}}
    assert body["HostConfig"]["Ulimits"][0]["Soft"] == -1  # type: ignore[index]


@pytest.mark.parametrize(("message", "expected"), [
    (("OCI runtime create failed: nvidia-container-cli: requirement error: unsatisfied "
     "condition: cuda>=13.0, please update your driver to a newer version"), True),
    ('could not select device driver "" with capabilities: [[gpu]]', False),
], ids=["require-cuda", "no-runtime"])
def test_driver_too_old(message: str, expected: bool) -> None:
    error = classify(message, "starting container")
    assert isinstance(error, DriverTooOld) is expected
    if isinstance(error, DriverTooOld):  # the daemon's text, and the condition it names
        assert error.detail == message
        assert error.requirement == "cuda>=13.0, please update your driver to a newer version"
