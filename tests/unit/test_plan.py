"""The plan: options + a (fake NVML) probe → image, build args and the exact create body."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from launcher._build import image_tag
from launcher._cli import build_parser
from launcher._errors import LauncherError, UsageError
from launcher._options import PlanOptions, plan_options_from_args
from launcher._plan import ROOT, Plan, make_plan
from launcher._probe import Probe, probe_host
from tests.fakenvml import NOT_SUPPORTED, FakeGpu, FakeNvml, loader

H100 = FakeGpu(uuid="GPU-h100")
B200 = FakeGpu(name="NVIDIA B200", uuid="GPU-b200", compute_capability=(10, 0))
V100 = FakeGpu(name="Tesla V100-SXM2-16GB", uuid="GPU-v100", compute_capability=(7, 0),
               mig_mode=NOT_SUPPORTED)
K80 = FakeGpu(name="Tesla K80", uuid="GPU-k80", compute_capability=(3, 7))
A100_MIG = FakeGpu(name="NVIDIA A100-SXM4-40GB", uuid="GPU-a100", compute_capability=(8, 0),
                   mig_mode=(1, 1))
ENVIRON = {"HOME": "/home/u"}


def fake_tag(root: Path, dockerfile: str, build_args: Any, wheelhouse: Path | None,
             labels: Any) -> str:
    return f"test/{dockerfile.lower()}:{len(build_args)}"


def probe_of(*gpus: FakeGpu, driver: str = "550.54.15", cuda: int = 12040) -> Probe:
    return probe_host(loader(FakeNvml(list(gpus), driver=driver, cuda=cuda)))


NO_NVML = probe_host(loader(FakeNvml([], library_missing=True)))


def plan(argv: list[str], probe: Probe | None = NO_NVML, cwd: str = "/work") -> Plan:
    args = build_parser().parse_args(["up", "--dry-run", *argv])
    options = plan_options_from_args(args, ENVIRON, cwd)
    return make_plan(options, None if options.build.no_probe else probe, tag=fake_tag)


CPU_CREATE = {
    "Image": "test/dockerfile:1",
    "User": "10001:10001",
    "Env": ["DEVICE=cpu"],
    "Labels": {"org.gpu-launcher.managed": "true", "org.gpu-launcher.name": "gpu-launcher"},
    "ExposedPorts": {"8000/tcp": {}},
    "Healthcheck": {
        "Test": ["CMD", "python", "-c",
                 'import urllib.request as u; u.urlopen("http://127.0.0.1:8000/readyz", timeout=2)'],
        "Interval": 5_000_000_000, "Timeout": 3_000_000_000, "StartPeriod": 180_000_000_000,
        "Retries": 3,
    },
    "HostConfig": {
        "DeviceRequests": None,
        "PortBindings": {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8000"}]},
        "Binds": ["gpu-launcher-models:/models", "gpu-launcher-data:/data"],
        "Memory": 0,
        "NanoCpus": 0,
        "ShmSize": 1 << 30,
        "Ulimits": [{"Name": "memlock", "Soft": -1, "Hard": -1},
                    {"Name": "stack", "Soft": 67108864, "Hard": 67108864}],
        "RestartPolicy": {"Name": "unless-stopped", "MaximumRetryCount": 0},
        "ReadonlyRootfs": True,
        "Tmpfs": {"/tmp": "rw,nosuid,nodev,size=1g"},
        "SecurityOpt": ["no-new-privileges"],
        "CapDrop": ["ALL"],
        "PidsLimit": 1024,
    },
}


def without_plan_label(create: Any) -> Any:
    body = copy.deepcopy(dict(create))
    assert len(body["Labels"].pop("org.gpu-launcher.plan")) == 16
    return body


def test_default_plan_is_the_hardened_cpu_container() -> None:
    result = plan([])
    assert without_plan_label(result.create) == CPU_CREATE
    assert (result.build.dockerfile, result.build.base_image, dict(result.build.build_args),
            result.gpu) == (
        "Dockerfile", "python:3.11-slim", {"BASE_IMAGE": "python:3.11-slim"}, False)
    assert result.warnings == ()


def test_plan_tag_is_the_content_hash_of_the_build_inputs() -> None:
    args = build_parser().parse_args(["up", "--dry-run"])
    result = make_plan(plan_options_from_args(args, {}, "/"), None, root=ROOT)
    assert result.image.startswith("gpu-launcher/service:cpu-")
    assert result.create["Image"] == result.image


GPU_PLANS = [
    ("hopper-580-all", ["--gpus", "all"], probe_of(H100, driver="580.65.06", cuda=13000),
     "nvidia/cuda:13.0.2-runtime-ubuntu24.04", "cu130",
     [{"Driver": "", "Count": -1, "DeviceIDs": None, "Capabilities": [["gpu"]], "Options": {}}]),
    ("hopper-570", ["--gpus", "1"], probe_of(H100, driver="570.124.06", cuda=12080),
     "nvidia/cuda:12.6.3-runtime-ubuntu24.04", "cu126",
     [{"Driver": "", "Count": 1, "DeviceIDs": None, "Capabilities": [["gpu"]], "Options": {}}]),
    ("hopper-550-minor-compat", ["--gpus", "all"], probe_of(H100),
     "nvidia/cuda:12.4.1-runtime-ubuntu22.04", "cu126", None),
    ("blackwell-580", ["--gpus", "all"], probe_of(B200, driver="580.65.06", cuda=13000),
     "nvidia/cuda:13.0.2-runtime-ubuntu24.04", "cu130", None),
    ("volta-580-cu126", ["--gpus", "all"], probe_of(V100, driver="580.65.06", cuda=13000),
     "nvidia/cuda:12.6.3-runtime-ubuntu24.04", "cu126", None),
    ("two-gpus-all", ["--gpus", "all"], probe_of(H100, V100, driver="580.65.06", cuda=13000),
     "nvidia/cuda:12.6.3-runtime-ubuntu24.04", "cu126", None),
    ("two-gpus-first-only", ["--gpus", "device=0"],
     probe_of(H100, V100, driver="580.65.06", cuda=13000),
     "nvidia/cuda:13.0.2-runtime-ubuntu24.04", "cu130",
     [{"Driver": "", "Count": 0, "DeviceIDs": ["0"], "Capabilities": [["gpu"]], "Options": {}}]),
    ("two-gpus-by-uuid", ["--gpus", "device=GPU-v100"],
     probe_of(H100, V100, driver="580.65.06", cuda=13000),
     "nvidia/cuda:12.6.3-runtime-ubuntu24.04", "cu126", None),
    ("pinned", ["--gpus", "all", "--cuda", "12.6"],
     probe_of(H100, driver="580.65.06", cuda=13000),
     "nvidia/cuda:12.6.3-runtime-ubuntu24.04", "cu126", None),
    ("no-probe-default", ["--gpus", "all", "--no-probe"], None,
     "nvidia/cuda:12.6.3-runtime-ubuntu24.04", "cu126", None),
    ("no-probe-pinned", ["--gpus", "all", "--no-probe", "--cuda", "13.0"], None,
     "nvidia/cuda:13.0.2-runtime-ubuntu24.04", "cu130", None),
]


@pytest.mark.parametrize("argv, probe, image, wheel, requests", [g[1:] for g in GPU_PLANS],
                         ids=[g[0] for g in GPU_PLANS])
def test_gpu_plans(argv: list[str], probe: Probe | None, image: str, wheel: str,
                   requests: list[dict[str, Any]] | None) -> None:
    result = plan(argv, probe)
    assert result.gpu and result.build.dockerfile == "Dockerfile.gpu"
    assert dict(result.build.build_args) == {
        "CUDA_IMAGE": image, "TORCH_INDEX_URL": f"https://download.pytorch.org/whl/{wheel}",
        "TORCH_VARIANT": wheel}
    assert result.create["Env"] == ["DEVICE=cuda"]
    if requests is not None:
        assert result.create["HostConfig"]["DeviceRequests"] == requests
    assert result.explanation.endswith(f"→ {image} with {wheel} (torch 2.13.0+{wheel})")
    # everything else is the same hardened container as on CPU
    body = without_plan_label(result.create)
    del body["HostConfig"]["DeviceRequests"], body["Env"], body["Image"]
    expected = copy.deepcopy(CPU_CREATE)
    del expected["HostConfig"]["DeviceRequests"], expected["Env"], expected["Image"]
    assert body == expected


REFUSED = [
    ("blackwell-550", ["--gpus", "all"], probe_of(B200),
     ("driver 550.54.15 runs CUDA ≤ 12.4; GPUs: NVIDIA B200 (sm_100); torch 2.13.0 stable "
      "wheels: cu130 (sm_75…sm_120+PTX), cu126 (sm_50…sm_90); cu130: needs a driver ≥ 580; "
      "cu126: no code for sm_100 → none fits: install an NVIDIA driver ≥ 580"),
     "install an NVIDIA driver ≥ 580 (for cu130), or run on CPU without --gpus"),
    ("kepler", ["--gpus", "all"], probe_of(K80, driver="470.256.02", cuda=11040), None,
     ("no torch 2.13.0 wheel has kernels for Tesla K80 (sm_37): leave it out with "
      "--gpus '\"device=...\"', or run on CPU without --gpus")),
    ("require-gpu-without-nvml", ["--gpus", "all", "--require-gpu"], NO_NVML,
     ("--gpus all --require-gpu: no GPU found (NVML library (libnvidia-ml.so.1) not found: "
     "no NVIDIA driver on this host)"),
     ("install the NVIDIA driver and the NVIDIA Container Toolkit (nvidia-ctk runtime configure "
     "--runtime=docker), or drop --require-gpu")),
    ("unknown-device", ["--gpus", "device=5"], probe_of(H100, V100, driver="580.65.06",
                                                        cuda=13000),
     "--gpus device=5: no such GPU on this host (found: 0 (GPU-h100), 1 (GPU-v100))",
     "pick an index or UUID that 'launcher probe' lists"),
    ("too-many", ["--gpus", "3"], probe_of(H100, V100, driver="580.65.06", cuda=13000),
     "--gpus asks for 3 GPUs; this host has 2", "ask for fewer, or use --gpus all"),
]


@pytest.mark.parametrize("argv, probe, message, hint", [r[1:] for r in REFUSED],
                         ids=[r[0] for r in REFUSED])
def test_refused_plans_say_why_and_what_to_do(argv: list[str], probe: Probe, message: str | None,
                                              hint: str) -> None:
    with pytest.raises(LauncherError) as info:
        plan(argv, probe)
    assert info.value.exit_code == 1
    assert info.value.hint == hint
    if message is not None:
        assert info.value.message == message


def test_gpus_without_a_gpu_falls_back_to_cpu_with_a_warning() -> None:
    result = plan(["--gpus", "all"])
    assert not result.gpu and result.create["HostConfig"]["DeviceRequests"] is None
    assert result.warnings == (
        ("--gpus all: no GPU found (NVML library (libnvidia-ml.so.1) not found: no NVIDIA "
        "driver on this host); running on CPU"),)
    assert plan(["--gpus", "all"], probe_of()).warnings == (
        "--gpus all: no GPU found (NVML sees no GPUs); running on CPU",)


def test_mig_and_unquoted_device_lists_are_warned() -> None:
    result = plan(["--gpus", "all"], probe_of(A100_MIG, driver="580.65.06", cuda=13000))
    assert result.warnings == (
        ("GPU 0 (NVIDIA A100-SXM4-40GB) has MIG enabled: the container sees its MIG devices; "
        "select one with --gpus device=MIG-<uuid>"),)
    result = plan(["--gpus", "device=0,1"], probe_of(H100, H100, driver="580.65.06", cuda=13000))
    assert result.warnings[0] == (
        "--gpus device=0,1 reads as device=0 plus a count of 1, as Docker reads it; to select "
        "a list of devices quote it: --gpus '\"device=0,1\"'")
    result = plan(["--gpus", "device=0,1,driver=nvidia"],
                  probe_of(H100, H100, driver="580.65.06", cuda=13000))
    assert result.warnings[0].endswith("quote it: --gpus '\"device=...\"'")


UNQUOTED = ("--gpus device=0,2 reads as device=0 plus a count of 2, as Docker reads it; to "
            "select a list of devices quote it: --gpus '\"device=0,2\"'")


@pytest.mark.parametrize("probe", [
    None, probe_of(), probe_of(H100, H100, H100, driver="580.65.06", cuda=13000),
], ids=["not-probed", "no-gpu-here", "three-gpus"])
def test_an_unquoted_device_list_is_warned_whatever_the_probe_found(probe: Probe | None) -> None:
    assert UNQUOTED in plan(["--gpus", "device=0,2"], probe).warnings


def test_docker_style_flags_land_in_the_create_body(tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("A=1\n# comment\nHOME\n")
    result = plan(["--name", "svc", "-p", "8080:8000", "-p", "127.0.0.1:9090:9090/udp",
                   "-v", "mymodels:/models", "-v", "./cache:/cache:ro", "-v", "/scratch",
                   "--env-file", str(env_file), "-e", "B=2", "-e", "DEVICE=cpu",
                   "--memory", "8g", "--cpus", "1.5", "--shm-size", "2g",
                   "--restart", "on-failure:3"], cwd="/srv")
    create = result.create
    host = create["HostConfig"]
    assert create["Env"] == ["A=1", "HOME=/home/u", "B=2", "DEVICE=cpu"]
    assert create["Labels"]["org.gpu-launcher.name"] == "svc"
    assert create["ExposedPorts"] == {"8000/tcp": {}, "9090/udp": {}}
    assert host["PortBindings"] == {"8000/tcp": [{"HostIp": "", "HostPort": "8080"}],
                                    "9090/udp": [{"HostIp": "127.0.0.1", "HostPort": "9090"}]}
    assert host["Binds"] == ["svc-data:/data", "mymodels:/models", "/srv/cache:/cache:ro"]
    assert create["Volumes"] == {"/scratch": {}}
    assert (host["Memory"], host["NanoCpus"], host["ShmSize"]) == (8 << 30, 1_500_000_000, 2 << 30)
    assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}


@pytest.mark.parametrize("argv, ulimits", [
    (["--ulimit", "memlock=8388608"], [{"Name": "memlock", "Soft": 8388608, "Hard": 8388608},
                                       {"Name": "stack", "Soft": 67108864, "Hard": 67108864}]),
    (["--ulimit", "nofile=1024:2048", "--ulimit", "stack=-1", "--ulimit", "nofile=4096"],
     [{"Name": "memlock", "Soft": -1, "Hard": -1}, {"Name": "nofile", "Soft": 4096, "Hard": 4096},
      {"Name": "stack", "Soft": -1, "Hard": -1}]),
], ids=["replaces-a-default", "adds-sorted-last-wins"])
def test_ulimit_replaces_the_default_of_its_name(argv: list[str],
                                                 ulimits: list[dict[str, Any]]) -> None:
    assert plan(argv).create["HostConfig"]["Ulimits"] == ulimits


def test_build_options_shape_the_image() -> None:
    wheelhouse = str(ROOT)  # any existing folder
    result = plan(["--base-image", "debian-py:1", "--wheelhouse", wheelhouse, "--no-cache"])
    assert dict(result.build.build_args) == {"BASE_IMAGE": "debian-py:1", "PIP_NO_INDEX": "1",
                                             "PIP_FIND_LINKS": "/wheelhouse"}
    assert (result.build.base_image, result.build.no_cache, str(result.build.wheelhouse)) == (
        "debian-py:1", True, wheelhouse)
    tagged = plan(["--tag", "me/svc:1"])
    assert tagged.image == tagged.create["Image"] == "me/svc:1"
    assert plan(["--cuda", "13.0"]).warnings == ("--cuda 13.0 ignored: this is a CPU plan",)


def test_plan_label_changes_exactly_when_the_container_would() -> None:
    label = "org.gpu-launcher.plan"
    same = plan([]).create["Labels"][label], plan([]).create["Labels"][label]
    assert same[0] == same[1]
    for argv in (["-p", "8081:8000"], ["-e", "X=1"], ["--memory", "1g"], ["--name", "other"],
                 ["--ulimit", "memlock=8388608"]):
        assert plan(argv).create["Labels"][label] != same[0], argv


BAD_FLAGS = [
    (["--gpus", "count=x"], ('invalid argument "count=x" for "--gpus" flag: invalid count (x): '
                            'value must be either "all" or an integer: invalid syntax')),
    (["--gpus", "all", "--gpus", "foo=1"],
     "invalid argument \"foo=1\" for \"--gpus\" flag: unexpected key 'foo' in 'foo=1'"),
    (["-p", "8080:x"], 'invalid argument "8080:x" for "--publish" flag: invalid containerPort: x'),
    (["-v", "glt:/m:bogus"], 'invalid argument "glt:/m:bogus" for "--volume" flag: invalid mode: bogus'),
    (["-e", "=x"], 'invalid argument "=x" for "--env" flag: invalid environment variable: =x'),
    (["--env-file", "/nonexistent/env"],
     'invalid argument "/nonexistent/env" for "--env-file" flag: No such file or directory'),
    (["--memory", "lots"], "invalid argument \"lots\" for \"--memory\" flag: invalid size: 'lots'"),
    (["--memory", "1m"], ('invalid argument "1m" for "--memory" flag: '
                         "Minimum memory limit allowed is 6MB")),
    (["--cpus", "x"], 'invalid argument "x" for "--cpus" flag: failed to parse x as a rational number'),
    (["--shm-size", "1q"], "invalid argument \"1q\" for \"--shm-size\" flag: invalid suffix: 'q'"),
    (["--ulimit", "memlock=2:1"], ('invalid argument "memlock=2:1" for "--ulimit" flag: '
                                  "ulimit soft limit must be less than or equal to hard limit: "
                                  "2 > 1")),
    (["--ulimit", "mem=1"], 'invalid argument "mem=1" for "--ulimit" flag: invalid ulimit type: mem'),
    (["--restart", "sometimes"],
     "invalid argument \"sometimes\" for \"--restart\" flag: invalid restart policy 'sometimes'"),
    (["--name", "a b"], ('invalid argument "a b" for "--name" flag: Invalid container name '
                        "(a b), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")),
    (["--cuda", "twelve"], ('invalid argument "twelve" for "--cuda" flag: invalid CUDA version '
                           "'twelve': expected MAJOR.MINOR, e.g. 12.6")),
    (["--gpus", "all", "--cuda", "12.4"], ('invalid argument "12.4" for "--cuda" flag: '
                                          "torch 2.13.0 has no wheels for CUDA 12.4")),
    (["--require-gpu"], "--require-gpu needs --gpus"),
    (["--wheelhouse", "/etc/passwd"], "--wheelhouse /etc/passwd: not a directory"),
]


@pytest.mark.parametrize("argv, message", BAD_FLAGS, ids=[" ".join(a) for a, _ in BAD_FLAGS])
def test_bad_flags_are_usage_errors_that_echo_the_value(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError) as info:
        plan(argv)
    assert info.value.exit_code == 2
    assert info.value.message == message
    assert info.value.hint


MIG_HOST = probe_of(H100, A100_MIG, driver="580.65.06", cuda=13000)


@pytest.mark.parametrize("value, wheel", [
    ("device=MIG-4f1c2a", "cu130"),  # a MIG device: its parent is one of the MIG-enabled GPUs
    ("device=1:0", "cu130"),  # GPU:SLICE
], ids=["mig-uuid", "gpu-colon-slice"])
def test_mig_device_ids_select_their_parent(value: str, wheel: str) -> None:
    result = plan(["--gpus", value], MIG_HOST)
    assert result.cuda is not None and result.cuda.wheel == wheel
    assert result.create["HostConfig"]["DeviceRequests"][0]["DeviceIDs"] == [value[7:]]


def test_mig_slice_of_a_gpu_without_mig_is_refused() -> None:
    with pytest.raises(LauncherError, match=r"^--gpus device=0:0: no such GPU on this host"):
        plan(["--gpus", "device=0:0"], MIG_HOST)


def test_cpu_fallback_is_the_lifecycles_to_ask_for() -> None:
    args = build_parser().parse_args(["up", "--gpus", "all"])
    options = plan_options_from_args(args, ENVIRON, "/work")
    result = make_plan(options, probe_of(H100, driver="580.65.06", cuda=13000), tag=fake_tag,
                       cpu_fallback="the engine has no NVIDIA runtime")
    assert not result.gpu and result.build.dockerfile == "Dockerfile"
    assert result.create["HostConfig"]["DeviceRequests"] is None
    assert result.warnings == ("--gpus all: the engine has no NVIDIA runtime; running on CPU",)
    assert options.gpus[0].names_devices is False


@pytest.mark.parametrize("environ, argv, env", [
    ({"API_TOKEN": "s3cret"}, [], ["DEVICE=cpu", "API_TOKEN=s3cret"]),
    ({"API_TOKEN": "s3cret"}, ["-e", "API_TOKEN=other"], ["DEVICE=cpu", "API_TOKEN=other"]),
    ({"API_TOKEN": "s3cret"}, ["-e", "API_TOKEN_FILE=/run/secrets/token"],
     ["DEVICE=cpu", "API_TOKEN_FILE=/run/secrets/token"]),
    ({"API_TOKEN": ""}, [], ["DEVICE=cpu"]),
    ({}, [], ["DEVICE=cpu"]),
], ids=["from-the-shell", "flag-wins", "file-instead", "empty-is-unset", "unset"])
def test_api_token_passes_from_the_environment_and_is_never_printed(
        environ: dict[str, str], argv: list[str], env: list[str]) -> None:
    args = build_parser().parse_args(["up", "--dry-run", *argv])
    result = make_plan(plan_options_from_args(args, {**ENVIRON, **environ}, "/work"), NO_NVML,
                       tag=fake_tag)
    assert result.create["Env"] == env
    shown = result.to_json()
    assert shown["create"]["Env"] == [
        "API_TOKEN=<hidden>" if e.startswith("API_TOKEN=") else e for e in env]
    assert "s3cret" not in json.dumps(shown) and "other" not in json.dumps(shown)
    assert result.create["HostConfig"]["PidsLimit"] == 1024


def test_the_services_drain_fits_the_stop_grace_of_launcher_down() -> None:
    from launcher._up import STOP_GRACE
    from service._settings import STOP_SECONDS

    assert STOP_GRACE > STOP_SECONDS  # SIGKILL comes only after drain + in-flight work


def test_the_plan_json_keeps_its_keys_and_reads_the_build_from_the_plans_build_spec() -> None:
    result = plan(["--gpus", "all", "--wheelhouse", str(ROOT)],
                  probe_of(H100, driver="580.65.06", cuda=13000))
    data = result.to_json()
    assert list(data) == ["name", "image", "dockerfile", "base_image", "build_args", "wheelhouse",
                          "no_cache", "gpu", "cuda", "explanation", "create", "warnings",
                          "predictor"]
    assert data["predictor"] is None  # --predictor: tests/unit/test_own_model_plan.py
    build = result.build
    assert (data["image"], data["dockerfile"], data["base_image"], data["build_args"],
            data["wheelhouse"], data["no_cache"]) == (
        build.tag, build.dockerfile, build.base_image, dict(build.build_args),
        str(build.wheelhouse), build.no_cache)
    assert data["create"]["Image"] == data["image"]
    assert (data["cuda"]["wheel"], data["cuda"]["image"]) == (
        "cu130", "nvidia/cuda:13.0.2-runtime-ubuntu24.04")


def test_a_new_build_tag_moves_the_create_body_and_its_plan_label() -> None:
    result = plan([])
    retagged = result.with_build(replace(result.build, tag="other/svc:2"))
    assert retagged.image == retagged.create["Image"] == "other/svc:2"
    assert retagged.plan_hash != result.plan_hash
    assert without_plan_label(retagged.create) == {**without_plan_label(result.create),
                                                   "Image": "other/svc:2"}
    assert retagged.with_build(result.build) == result  # and back: the same plan


def test_cuda_visible_devices_in_a_gpu_plan_is_warned() -> None:
    result = plan(["--gpus", "all", "-e", "CUDA_VISIBLE_DEVICES=1"],
                  probe_of(H100, V100, driver="580.65.06", cuda=13000))
    assert result.warnings == (
        ("CUDA_VISIBLE_DEVICES=1 is set in the container's environment (from -e/--env-file): "
        "inside, the --gpus devices are numbered from 0, so this selects other GPUs than you "
        "meant, or none; select GPUs with --gpus '\"device=...\"' and leave "
        "CUDA_VISIBLE_DEVICES unset"),)
    assert plan(["-e", "CUDA_VISIBLE_DEVICES=1"]).warnings == ()  # a CPU plan: no GPUs to miss


def test_up_tags_its_image_with_its_labels_as_build_does() -> None:
    # --label is part of the content-hash tag (launcher build hashes it too), so up and build
    # name the same image for the same inputs, and an image labelled otherwise is not reused.
    labelled = make_plan(PlanOptions(labels={"team": "ml"}), None)
    assert labelled.image == image_tag(ROOT, "Dockerfile", labelled.build.build_args,
                                       labels={"team": "ml"})
    assert labelled.image != make_plan(PlanOptions(), None).image
