"""compose.gpu.yml (+ compose.cpu.yml) as Compose v2 reads it, and the CPU stack brought up for
real: the predictor on 127.0.0.1, Prometheus scraping it over the compose network, `down -v`
leaving nothing behind. Select with `-k compose`."""

from __future__ import annotations

import functools
import json
import os
import re
import resource
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from launcher._build import IMAGE_REPO
from launcher._gpus import parse_gpus
from launcher._options import PlanOptions
from launcher._plan import Plan, make_plan
from launcher._up import STOP_GRACE
from service._settings import STOP_SECONDS
from tests.clihelpers import run_launcher
from tests.conftest import ROOT, TEST_LABEL, free_port, unavailable, unique
from tests.docker.conftest import BuiltImage

GPU_FILE = ROOT / "compose.gpu.yml"
CPU_FILE = ROOT / "compose.cpu.yml"
DASHBOARD = ROOT / "deploy/grafana/dashboards/predictor.json"
DATASOURCES = ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml"
SERVICES = ("predictor", "prometheus", "grafana")
# Every variable the files interpolate (e.g. TORCH_INDEX_URL, which scripts/setup reads too) and
# Compose's own: the caller's shell must not leak into what the tests see.
FILE_VARS = {m for f in (GPU_FILE, CPU_FILE) for m in re.findall(r"\$\{(\w+)", f.read_text())}


def _compose_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in FILE_VARS and not k.startswith("COMPOSE_")}
    return {**env, **(extra or {})}


def compose(*args: str, files: tuple[Path, ...] = (GPU_FILE,), env: dict[str, str] | None = None,
            timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = ["docker", "compose", "--project-directory", str(ROOT), "--env-file", os.devnull]
    for f in files:
        cmd += ["-f", str(f)]
    proc = subprocess.run([*cmd, *args], cwd=ROOT, env=_compose_env(env), capture_output=True,
                          text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd[2:] + list(args))} exited {proc.returncode}:\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def config(files: tuple[Path, ...] = (GPU_FILE,), env: dict[str, str] | None = None,
           profiles: tuple[str, ...] = ()) -> dict[str, Any]:
    """`docker compose config --format json`, a fresh copy (tests may change it)."""
    out = _config_json(files, tuple(sorted((env or {}).items())), profiles)
    return json.loads(out)  # type: ignore[no-any-return]


@functools.cache
def _config_json(files: tuple[Path, ...], env: tuple[tuple[str, str], ...],
                 profiles: tuple[str, ...]) -> str:
    profile_args = [a for p in profiles for a in ("--profile", p)]
    return compose(*profile_args, "config", "--format", "json", files=files,
                   env=dict(env)).stdout


@pytest.fixture(scope="module", autouse=True)
def compose_v2() -> None:
    """The real Compose v2 plugin. Missing: fail when CI=true, else skip."""
    try:
        version = subprocess.run(["docker", "compose", "version", "--short"], capture_output=True,
                                 text=True, timeout=30, check=False)
        ok = version.returncode == 0
        why = version.stderr.strip() or version.stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        ok, why = False, f"{type(exc).__name__}: {exc}"
    if not ok:
        unavailable(f"docker compose v2 not available ({why}); run scripts/setup --engine")


# --- the file as Compose reads it -----------------------------------------------------------


def test_compose_gpu_config_reserves_all_gpus() -> None:
    predictor = config()["services"]["predictor"]
    assert predictor["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "count": -1, "capabilities": ["gpu"]}]
    assert predictor["build"]["dockerfile"] == "Dockerfile.gpu"


@pytest.mark.parametrize(("files", "image"), [
    ((GPU_FILE,), f"{IMAGE_REPO}:gpu"),
    ((GPU_FILE, CPU_FILE), f"{IMAGE_REPO}:cpu"),
], ids=["gpu", "cpu"])
def test_compose_predictor_image_is_the_launchers(files: tuple[Path, ...], image: str) -> None:
    assert config(files)["services"]["predictor"]["image"] == image
    overridden = config(files, env={"PREDICTOR_IMAGE": "x/y:z"})
    assert overridden["services"]["predictor"]["image"] == "x/y:z"


def test_compose_cpu_override_reserves_no_devices() -> None:
    predictor = config((GPU_FILE, CPU_FILE))["services"]["predictor"]
    assert "deploy" not in predictor
    assert predictor["build"]["dockerfile"] == "Dockerfile"
    assert set(predictor["build"]["args"]) == {"BASE_IMAGE"}


@pytest.mark.parametrize("files", [(GPU_FILE,), (GPU_FILE, CPU_FILE)], ids=["gpu", "cpu"])
@pytest.mark.parametrize("service", SERVICES)
def test_compose_service_is_hardened(service: str, files: tuple[Path, ...]) -> None:
    svc = config(files, profiles=("grafana",))["services"][service]
    host = _plan(gpu=False).create["HostConfig"]
    hardening = {k: svc.get(k) for k in ("read_only", "cap_drop", "security_opt", "tmpfs",
                                         "restart", "pids_limit")}
    assert hardening == {"read_only": True, "cap_drop": ["ALL"],
                         "security_opt": host["SecurityOpt"],
                         "tmpfs": [f"{p}:{o}" for p, o in host["Tmpfs"].items()],
                         "restart": "unless-stopped", "pids_limit": host["PidsLimit"]}
    uid = svc["user"].split(":")[0]
    assert uid.isdigit() and uid != "0", f"{service} runs as user {svc['user']!r}"
    assert "healthcheck" in svc and svc["healthcheck"]["test"][0] == "CMD"
    assert list(svc["networks"]) == ["backend"]


@pytest.mark.parametrize(("env", "host_ip"), [
    ({}, "127.0.0.1"),
    ({"PUBLISH_ADDR": "0.0.0.0"}, "0.0.0.0"),
], ids=["loopback-by-default", "widened-by-PUBLISH_ADDR"])
def test_compose_publishes_ports_on(env: dict[str, str], host_ip: str) -> None:
    services = config(env=env, profiles=("grafana",))["services"]
    published = {(name, p["host_ip"], p["target"]) for name, svc in services.items()
                 for p in svc.get("ports", [])}
    assert published == {("predictor", host_ip, 8000), ("prometheus", host_ip, 9090),
                         ("grafana", host_ip, 3000)}


def test_compose_grafana_stays_off_without_its_profile() -> None:
    assert set(config()["services"]) == {"predictor", "prometheus"}


def test_compose_prometheus_waits_for_a_healthy_predictor() -> None:
    services = config(profiles=("grafana",))["services"]
    assert services["prometheus"]["depends_on"]["predictor"]["condition"] == "service_healthy"
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"


def test_compose_names_volumes_for_models_data_and_metrics() -> None:
    cfg = config(profiles=("grafana",))
    mounts = {(name, m["source"], m["target"]) for name, svc in cfg["services"].items()
              for m in svc.get("volumes", []) if m["type"] == "volume"}
    assert mounts == {("predictor", "models", "/models"), ("predictor", "data", "/data"),
                      ("prometheus", "prometheus-data", "/prometheus"),
                      ("grafana", "grafana-data", "/var/lib/grafana")}


# --- no drift from `launcher up` ------------------------------------------------------------


def _plan(gpu: bool) -> Plan:
    """What `launcher up [--gpus all] --no-probe` would create (compose can't probe either)."""
    options = PlanOptions(gpus=(parse_gpus("all"),), gpus_raw=("all",)) if gpu else PlanOptions()
    return make_plan(options, None, tag=lambda *_: "unused")


def _create_from_compose(cfg: dict[str, Any]) -> dict[str, Any]:
    """The predictor service as the Engine API create fields the plan also sets."""
    svc = cfg["services"]["predictor"]
    devices = svc.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices")
    ulimits = {k: (v, v) if isinstance(v, int) else (v["soft"], v["hard"])
               for k, v in svc["ulimits"].items()}
    return {
        "User": svc["user"],
        # a variable with no value that the shell does not set is not passed (None here)
        "Env": sorted(f"{k}={v}" for k, v in svc.get("environment", {}).items()
                      if v is not None),
        "HostConfig": {
            "DeviceRequests": None if devices is None else [
                {"Driver": d.get("driver", ""), "Count": d.get("count", 0),
                 "DeviceIDs": d.get("device_ids"), "Capabilities": [d["capabilities"]],
                 "Options": d.get("options", {})} for d in devices],
            "PortBindings": {f"{p['target']}/{p['protocol']}": [
                {"HostIp": p["host_ip"], "HostPort": p["published"]}] for p in svc["ports"]},
            "Binds": [f"{cfg['volumes'][m['source']]['name']}:{m['target']}"
                      for m in svc["volumes"]],
            "Memory": int(svc.get("mem_limit", 0)),
            "NanoCpus": int(float(svc.get("cpus", 0)) * 1e9),
            "ShmSize": int(svc["shm_size"]),
            "Ulimits": [{"Name": k, "Soft": s, "Hard": h} for k, (s, h) in ulimits.items()],
            "RestartPolicy": {"Name": svc["restart"], "MaximumRetryCount": 0},
            "ReadonlyRootfs": svc["read_only"],
            "Tmpfs": dict(t.split(":", 1) for t in svc["tmpfs"]),
            "SecurityOpt": svc["security_opt"],
            "CapDrop": svc["cap_drop"],
            "PidsLimit": svc["pids_limit"],
        },
    }


def _create_from_plan(plan: Plan) -> dict[str, Any]:
    create = plan.create
    host = {k: create["HostConfig"][k] for k in _create_from_compose(config())["HostConfig"]}
    if host["DeviceRequests"]:
        # `docker run --gpus` leaves the driver empty and the engine picks the one that serves
        # capability gpu (nvidia); the Compose spec names it.
        host["DeviceRequests"] = [{**r, "Driver": r["Driver"] or "nvidia"}
                                  for r in host["DeviceRequests"]]
    return {"User": create["User"], "Env": sorted(create["Env"]), "HostConfig": host}


def test_api_token_from_the_shell_reaches_the_predictor_in_both_and_the_drain_fits() -> None:
    cfg = config(env={"API_TOKEN": "from-the-shell"})
    up = cli_main_dry_run_json({"API_TOKEN": "from-the-shell"})
    assert cfg["services"]["predictor"]["environment"]["API_TOKEN"] == "from-the-shell"
    assert config()["services"]["predictor"]["environment"].get("API_TOKEN") is None
    assert "API_TOKEN=<hidden>" in up["create"]["Env"]
    assert "from-the-shell" not in json.dumps(up)
    grace = cfg["services"]["predictor"]["stop_grace_period"]
    assert re.fullmatch(r"\d+s", grace) and int(grace[:-1]) > STOP_SECONDS, grace
    assert STOP_GRACE > STOP_SECONDS


def cli_main_dry_run_json(environ: dict[str, str]) -> Any:
    """`launcher up --dry-run --json --no-probe` with ``environ`` added, as a real process."""
    proc = run_launcher("up", "--dry-run", "--json", "--no-probe", env=environ)
    assert proc.returncode == 0, proc.stderr
    assert "from-the-shell" not in proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize(("files", "gpu"), [((GPU_FILE,), True), ((GPU_FILE, CPU_FILE), False)],
                         ids=["gpu", "cpu"])
def test_compose_predictor_matches_launcher_up(files: tuple[Path, ...], gpu: bool) -> None:
    cfg, plan = config(files), _plan(gpu)
    assert cfg["name"] == plan.name  # so both name the volumes alike
    assert _create_from_compose(cfg) == _create_from_plan(plan)


@pytest.mark.parametrize(("files", "gpu"), [((GPU_FILE,), True), ((GPU_FILE, CPU_FILE), False)],
                         ids=["gpu", "cpu"])
def test_compose_builds_the_image_launcher_up_builds(files: tuple[Path, ...], gpu: bool) -> None:
    build, plan = config(files)["services"]["predictor"]["build"], _plan(gpu)
    assert (build["dockerfile"], build["args"]) == (plan.build.dockerfile, dict(plan.build.build_args))


def _dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def test_compose_grafana_dashboard_uses_the_provisioned_datasource() -> None:
    dash = json.loads(DASHBOARD.read_text())
    uid = re.search(r"^\s*uid:\s*(\S+)", DATASOURCES.read_text(), re.MULTILINE)
    assert uid is not None
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    assert {p["datasource"]["uid"] for p in panels} == {uid.group(1)}
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
    titles = {p["title"] for p in panels}
    assert {"GPU utilisation", "GPU memory", "GPU power", "Request latency",
            "Batch size"} <= titles


def _exported_names() -> set[str]:
    """Series names the service's registry exports, with one fake GPU behind NVML that this
    process uses (so the per-process memory gauge is there too)."""
    from prometheus_client import CollectorRegistry

    from service._metrics import ServiceMetrics
    from tests.fakenvml import FakeGpu, FakeNvml, loader

    registry = CollectorRegistry()
    gpu = FakeGpu(processes=[(os.getpid(), 1 << 30)])
    ServiceMetrics(registry, nvml_loader=loader(FakeNvml([gpu])))
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                "gauge": ("",), "info": ("_info",)}
    return {f.name + suffix for f in registry.collect() for suffix in suffixes.get(f.type, ("",))}


def test_compose_grafana_dashboard_queries_metrics_the_service_exports() -> None:
    queried = {name for expr in _dashboard_exprs()
               for name in re.findall(r"\bpredictor_\w+", expr)}
    assert queried - _exported_names() == set()
    assert {"predictor_gpu_utilization_ratio", "predictor_gpu_power_watts",
            "predictor_request_duration_seconds_bucket", "predictor_batch_size_bucket"} <= queried


# --- the CPU stack, for real ----------------------------------------------------------------


def _render_dashboard_expr(expr: str) -> str:
    # Grafana's variables, as the dashboard's defaults would fill them in.
    return (expr.replace("$__rate_interval", "1m").replace("$job", "predictor")
            .replace("$instance", ".*"))


def _wait_for(what: str, probe: Any, timeout: float, log: Any) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
            if last:
                return last
        except requests.RequestException as exc:
            last = exc
        time.sleep(1)
    raise AssertionError(f"{what} not seen within {timeout}s (last: {last!r}):\n{log()}")


def _leftovers(docker_client: Any, project: str) -> list[str]:
    label = f"com.docker.compose.project={project}"
    return ([f"container {c.name}" for c in docker_client.containers.list(
                all=True, filters={"label": label})]
            + [f"volume {v.name}" for v in docker_client.volumes.list(filters={"label": label})]
            + [f"network {n.name}" for n in docker_client.networks.list(
                filters={"label": label})])


@pytest.fixture
def predictor_image(docker_client: Any, cpu_image: BuiltImage) -> Iterator[str]:
    """The CPU service image (tests/docker/conftest.py builds it once), under a tag of our own."""
    tag = f"{IMAGE_REPO}:{unique('compose')}"
    docker_client.images.get(cpu_image.id).tag(tag)
    yield tag
    docker_client.images.remove(tag, noprune=True)


@pytest.fixture
def prometheus_image(docker_client: Any) -> str:
    """prom/prometheus as the file pins it when it is here, else the Debian stand-in under its
    own name (scripts/standin-third-party says which on stdout: PROMETHEUS_IMAGE=...)."""
    proc = subprocess.run([str(ROOT / "scripts/standin-third-party")], capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    chosen = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    image = chosen["PROMETHEUS_IMAGE"]
    if image != config()["services"]["prometheus"]["image"]:
        assert image.startswith("gpu-launcher/standin-"), image
        print(f"prometheus: using the stand-in {image} (the real image cannot be pulled here)")
    docker_client.images.get(image)
    return image


@pytest.mark.docker
@pytest.mark.slow
def test_compose_cpu_stack_serves_and_is_scraped(docker_client: Any, predictor_image: str,
                                                 prometheus_image: str,
                                                 tmp_path: Path) -> None:
    project = unique("glt-compose")
    ports = {var: free_port() for var in ("PREDICTOR_PORT", "PROMETHEUS_PORT")}
    env = {"PREDICTOR_IMAGE": predictor_image, "PROMETHEUS_IMAGE": prometheus_image,
           **{k: str(v) for k, v in ports.items()}}
    # An engine started from a shell with a capped memlock can't hand out "unlimited".
    memlock = resource.getrlimit(resource.RLIMIT_MEMLOCK)[1]
    if memlock != resource.RLIM_INFINITY:
        env["MEMLOCK_LIMIT"] = str(memlock)
    # Our label on everything the stack creates, so a crashed run is still findable.
    label = dict(TEST_LABEL)
    labels = tmp_path / "compose.test-labels.yml"
    labels.write_text(json.dumps({
        "services": {s: {"labels": label} for s in ("predictor", "prometheus")},
        "networks": {"backend": {"labels": label}},
        "volumes": {v: {"labels": label} for v in ("models", "data", "prometheus-data")},
    }))
    files = (GPU_FILE, CPU_FILE, labels)
    predictor = f"http://127.0.0.1:{ports['PREDICTOR_PORT']}"
    prometheus = f"http://127.0.0.1:{ports['PROMETHEUS_PORT']}"

    def logs() -> str:
        return compose("-p", project, "logs", "--no-color", "--tail", "40", files=files, env=env,
                       check=False).stdout

    try:
        started = time.monotonic()
        compose("-p", project, "up", "--detach", "--wait", "--wait-timeout", "180", "--no-build",
                "--pull", "never", files=files, env=env, timeout=240)
        up_s = time.monotonic() - started

        (container,) = docker_client.containers.list(filters={"label": [
            f"com.docker.compose.project={project}", "com.docker.compose.service=predictor"]})
        host = container.attrs["HostConfig"]
        assert [b["HostIp"] for b in host["PortBindings"]["8000/tcp"]] == ["127.0.0.1"]
        hardening = ("ReadonlyRootfs", "CapDrop", "SecurityOpt", "Tmpfs", "ShmSize", "PidsLimit")
        planned = _plan(gpu=False).create["HostConfig"]
        assert {k: host[k] for k in hardening} == {k: planned[k] for k in hardening}
        assert container.attrs["Config"]["User"] == "10001:10001"
        assert host["DeviceRequests"] in (None, [])

        body = {"inputs": [[0.0] * 64]}
        answer = requests.post(predictor + "/predict", json=body, timeout=10)
        assert answer.status_code == 200, answer.text

        def predictor_up() -> bool:
            r = requests.get(prometheus + "/api/v1/query", params={"query": 'up{job="predictor"}'},
                             timeout=5).json()
            return [s["value"][1] for s in r["data"]["result"]] == ["1"]

        _wait_for("up{job=\"predictor\"} == 1 in Prometheus", predictor_up, 60, logs)
        scraped_s = time.monotonic() - started

        # Every dashboard query is valid PromQL to this Prometheus, and the request-side series
        # it draws exist once the predictor has answered.
        for expr in _dashboard_exprs():
            r = requests.get(prometheus + "/api/v1/query",
                             params={"query": _render_dashboard_expr(expr)}, timeout=5).json()
            assert r["status"] == "success", (expr, r)
        names = set(requests.get(prometheus + "/api/v1/label/__name__/values",
                                 timeout=5).json()["data"])
        assert "predictor_requests_total" in names, sorted(names)
        print(f"compose up --wait {up_s:.1f}s, predictor scraped after {scraped_s:.1f}s")
    finally:
        down = compose("-p", project, "down", "--volumes", "--remove-orphans", "--timeout", "10",
                       files=files, env=env, timeout=120, check=False)
    assert down.returncode == 0, down.stderr
    assert _leftovers(docker_client, project) == []
