"""One plan, three renderers, held equal: what `launcher up` sends the engine (the create body of
`up --dry-run --json`), the predictor of compose.gpu.yml as `docker compose config` reads it,
and the Deployment of `launcher render k8s` run the same image with the same env, port, user,
probe, hardening and mounts. Select with `-k kubernetes`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from launcher._cli import main
from launcher._limits import parse_bytes
from tests.docker.test_compose import CPU_FILE, GPU_FILE, compose_v2, config

pytestmark = pytest.mark.usefixtures(compose_v2.__name__)

_PROBE_URL = re.compile(r"http://127\.0\.0\.1:(\d+)(/[a-z]+)")
_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?")


def _go_duration(value: str) -> float:
    """Compose renders durations as Go does: 5s, 3m0s, 1h0m0s."""
    match = _DURATION.fullmatch(value)
    assert match and value, value
    hours, minutes, seconds = (float(g or 0) for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def _quantity(value: str | None) -> int | None:
    """A Kubernetes binary quantity (1Gi, 512Mi, 1000) in bytes."""
    if value is None:
        return None
    shifts = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40}
    return int(value[:-2]) << shifts[value[-2:]] if value[-2:] in shifts else int(value)


def _command_probe(test: list[str]) -> tuple[int, str]:
    assert test[:2] == ["CMD", "python"], test
    match = _PROBE_URL.search(test[-1])
    assert match, test
    return int(match[1]), match[2]


def facts_from_create(body: dict[str, Any]) -> dict[str, Any]:
    host, health = body["HostConfig"], body["Healthcheck"]
    port, path = _command_probe(health["Test"])
    tmpfs = {p: parse_bytes(dict(o.partition("=")[::2] for o in opts.split(","))["size"])
             for p, opts in host["Tmpfs"].items()}
    return {
        "image": body["Image"],
        "env": sorted(body["Env"]),
        "ports": sorted(int(p.partition("/")[0]) for p in body["ExposedPorts"]),
        "user": body["User"],
        "probe": {"port": port, "path": path, "every_s": health["Interval"] / 1e9,
                  "timeout_s": health["Timeout"] / 1e9, "start_s": health["StartPeriod"] / 1e9,
                  "retries": health["Retries"]},
        "security": {"read_only_root": host["ReadonlyRootfs"],
                     "no_new_privileges": "no-new-privileges" in host["SecurityOpt"],
                     "cap_drop": host["CapDrop"]},
        "mounts": {**{b.split(":")[1]: None for b in host["Binds"]}, **tmpfs,
                   "/dev/shm": host["ShmSize"]},
    }


def facts_from_compose(cfg: dict[str, Any]) -> dict[str, Any]:
    svc = cfg["services"]["predictor"]
    health = svc["healthcheck"]
    port, path = _command_probe(health["test"])
    tmpfs = {p: parse_bytes(dict(o.partition("=")[::2] for o in opts.split(","))["size"])
             for p, _, opts in (t.partition(":") for t in svc["tmpfs"])}
    return {
        "image": svc["image"],
        # KEY with no value passes this shell's KEY (unset here: not passed), as -e KEY does
        "env": sorted(f"{k}={v}" for k, v in svc["environment"].items() if v is not None),
        "ports": sorted(p["target"] for p in svc["ports"]),
        "user": svc["user"],
        "probe": {"port": port, "path": path, "every_s": _go_duration(health["interval"]),
                  "timeout_s": _go_duration(health["timeout"]),
                  "start_s": _go_duration(health["start_period"]), "retries": health["retries"]},
        "security": {"read_only_root": svc["read_only"],
                     "no_new_privileges": "no-new-privileges" in svc["security_opt"],
                     "cap_drop": svc["cap_drop"]},
        "mounts": {**{m["target"]: None for m in svc["volumes"]}, **tmpfs,
                   "/dev/shm": int(svc["shm_size"])},
    }


def facts_from_deployment(deployment: dict[str, Any]) -> dict[str, Any]:
    pod = deployment["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    ready, startup = c["readinessProbe"], c["startupProbe"]
    sizes = {v["name"]: v["emptyDir"].get("sizeLimit") for v in pod["volumes"]
             if v.get("emptyDir", {}).get("medium") == "Memory"}
    user = pod["securityContext"]
    security = c["securityContext"]
    return {
        "image": c["image"],
        "env": sorted(f"{e['name']}={e['value']}" for e in c["env"]),
        "ports": sorted(ports.values()),
        "user": f"{user['runAsUser']}:{user['runAsGroup']}",
        "probe": {"port": ports[ready["httpGet"]["port"]], "path": ready["httpGet"]["path"],
                  "every_s": ready["periodSeconds"], "timeout_s": ready["timeoutSeconds"],
                  "start_s": startup["periodSeconds"] * startup["failureThreshold"],
                  "retries": ready["failureThreshold"]},
        "security": {"read_only_root": security["readOnlyRootFilesystem"],
                     "no_new_privileges": security["allowPrivilegeEscalation"] is False,
                     "cap_drop": security["capabilities"]["drop"]},
        "mounts": {m["mountPath"]: _quantity(sizes.get(m["name"])) for m in c["volumeMounts"]},
    }


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 0, capsys.readouterr().err
    return capsys.readouterr().out


@pytest.mark.parametrize(("files", "up_flags", "render_flags"), [
    ((GPU_FILE, CPU_FILE), [], []),
    ((GPU_FILE,), ["--gpus", "1", "--no-probe"], ["--gpus", "1"]),
], ids=["cpu", "gpu"])
def test_docker_compose_and_kubernetes_run_the_same_service(
        files: tuple[Path, ...], up_flags: list[str], render_flags: list[str],
        capsys: pytest.CaptureFixture[str]) -> None:
    create = json.loads(_cli(["up", "--dry-run", "--json", *up_flags], capsys))["create"]
    docs = [d for d in yaml.safe_load_all(_cli(["render", "k8s", *render_flags], capsys)) if d]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    cfg = config(files, env={"PREDICTOR_IMAGE": create["Image"]})
    docker, compose, kubernetes = (facts_from_create(create), facts_from_compose(cfg),
                                   facts_from_deployment(deployment))
    assert docker == compose
    assert docker == kubernetes
    # GPUs: compose.gpu.yml reserves all of a host's; a pod asks for as many as `up --gpus N`
    requests = create["HostConfig"]["DeviceRequests"] or []
    limits = deployment["spec"]["template"]["spec"]["containers"][0].get("resources", {})
    assert sum(r["Count"] for r in requests) == limits.get("limits", {}).get("nvidia.com/gpu", 0)
    # and the facts are the ones a user was promised, not three copies of a mistake
    assert docker["probe"]["path"] == "/readyz" and docker["user"] == "10001:10001"
    assert set(docker["mounts"]) == {"/models", "/data", "/tmp", "/dev/shm"}
