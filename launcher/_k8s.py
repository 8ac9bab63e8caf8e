"""Kubernetes manifests from the launch plan (pure): the third renderer of the one plan, next to
the Engine API create body (:mod:`launcher._plan`) and the compose service (compose.gpu.yml).

The pod is read off ``plan.create``, so image, env, port, user, probe timings, hardening and
mounts are decided once; what Kubernetes adds (replicas, scheduling onto GPU nodes, the
autoscaler, the disruption budget) comes from :class:`K8sOptions`. Facts about Kubernetes and
its GPU and monitoring add-ons are in :data:`FACTS`, each with its source.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from launcher._k8s_names import quantity_bytes, quantity_cpu
from launcher._limits import parse_bytes
from launcher._options import CONTAINER_PORT, STOP_GRACE
from launcher._plan import LABEL_PLAN, READY_PATH, Plan

__all__ = [
    "FACTS",
    "GPU_RESOURCE",
    "LIVE_PATH",
    "METRIC",
    "OLDEST_KUBERNETES",
    "PRESTOP_PAUSE_S",
    "TERMINATION_GRACE_S",
    "Fact",
    "K8sOptions",
    "adapter_rules",
    "render_manifests",
    "to_yaml",
]


@dataclass(frozen=True)
class Fact:
    value: str
    source: str
    why: str = ""


_DATA = json.loads(resources.files("launcher").joinpath("data/kubernetes.json").read_text())
# What Kubernetes and its add-ons call things, each with its source (launcher/data/kubernetes.json).
FACTS: Mapping[str, Fact] = {k: Fact(**row) for k, row in _DATA["facts"].items()}
OLDEST_KUBERNETES: str = _DATA["oldest_kubernetes"]
GPU_RESOURCE = FACTS["gpu_resource"].value
GPU_NODE_LABEL = FACTS["gpu_node_label"].value
GPU_TAINT = FACTS["gpu_taint"].value
LIVE_PATH = "/healthz"  # 503 only once the model failed to load: restart the container
METRICS_PATH = "/metrics"
METRIC = "predictor_in_flight_requests"  # a gauge per pod: the requests it holds right now
CONTAINER = "predictor"
PORT_NAME = "http"
# preStop pause: the endpoints controller and the proxies drop the pod before it sees SIGTERM.
PRESTOP_PAUSE_S = 5
# The pause, the service's drain after SIGTERM (today the launcher's own stop grace; the
# service's DRAIN_SECONDS, when it has one, must fit in STOP_GRACE), and a margin.
TERMINATION_GRACE_S = PRESTOP_PAUSE_S + STOP_GRACE + 5
SCRAPE_INTERVAL = "15s"
MANAGED_BY = "gpu-launcher"


@dataclass(frozen=True)
class K8sOptions:
    """What Kubernetes adds to the plan (``launcher render k8s``'s own flags, parsed)."""

    gpus: int = 0
    replicas: int = 1
    max_replicas: int = 4
    namespace: str | None = None
    runtime_class: str | None = None
    node_selector: Mapping[str, str] = field(default_factory=dict)
    models_pvc: str | None = None
    service_monitor: bool = False
    target_in_flight: int = 16


# --- the documents --------------------------------------------------------------------------


def _labels(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/component": "predictor",
            "app.kubernetes.io/managed-by": MANAGED_BY}


def _selector(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name}


def _metadata(plan: Plan, opts: K8sOptions, suffix: str = "") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": plan.name + suffix}
    if opts.namespace:
        meta["namespace"] = opts.namespace
    meta["labels"] = _labels(plan.name)
    return meta


def _seconds(ns: int) -> int:
    return max(1, math.ceil(ns / 1_000_000_000))


def _probes(health: Mapping[str, Any]) -> dict[str, Any]:
    """The plan's healthcheck as the three probes: startup holds the other two off for the
    start period (model loading), then readiness gates traffic and liveness restarts."""
    period, timeout = _seconds(health["Interval"]), _seconds(health["Timeout"])
    retries = int(health["Retries"])

    def probe(path: str, failures: int) -> dict[str, Any]:
        return {"httpGet": {"path": path, "port": PORT_NAME}, "periodSeconds": period,
                "timeoutSeconds": timeout, "failureThreshold": failures}

    return {
        "startupProbe": probe(READY_PATH, math.ceil(_seconds(health["StartPeriod"]) / period)),
        "readinessProbe": probe(READY_PATH, retries),
        "livenessProbe": probe(LIVE_PATH, retries),
    }


def _user(create: Mapping[str, Any]) -> tuple[int, int]:
    uid, _, gid = str(create["User"]).partition(":")
    return int(uid), int(gid or uid)


def _container_port(create: Mapping[str, Any]) -> int:
    ports = [int(p.partition("/")[0]) for p in create["ExposedPorts"]]
    return CONTAINER_PORT if CONTAINER_PORT in ports else ports[0]


def _tmpfs_size(options: str) -> int | None:
    for opt in options.split(","):
        key, _, value = opt.partition("=")
        if key == "size":
            return parse_bytes(value)
    return None


def _volumes(plan: Plan, opts: K8sOptions) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumeMounts, volumes): the plan's tmpfs and /dev/shm as memory emptyDirs, its named
    volumes as emptyDirs, /models from the claim when one is named (read-only: replicas share
    it)."""
    host = plan.create["HostConfig"]
    mounts: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []

    def memory(name: str, path: str, size: int | None) -> None:
        empty: dict[str, Any] = {"medium": "Memory"}
        if size:
            empty["sizeLimit"] = quantity_bytes(size)
        mounts.append({"name": name, "mountPath": path})
        volumes.append({"name": name, "emptyDir": empty})

    for path, tmpfs_options in sorted(host["Tmpfs"].items()):
        memory(path.strip("/").replace("/", "-") or "root", path, _tmpfs_size(tmpfs_options))
    memory("dshm", "/dev/shm", int(host["ShmSize"]) or None)
    for bind in host["Binds"]:
        target = str(bind).split(":")[1]
        name = target.strip("/").replace("/", "-")
        if target == "/models" and opts.models_pvc:
            mounts.append({"name": name, "mountPath": target, "readOnly": True})
            volumes.append({"name": name, "persistentVolumeClaim": {
                "claimName": opts.models_pvc, "readOnly": True}})
        else:
            mounts.append({"name": name, "mountPath": target})
            volumes.append({"name": name, "emptyDir": {}})
    return mounts, volumes


def _resources(plan: Plan, opts: K8sOptions) -> dict[str, Any]:
    host = plan.create["HostConfig"]
    limits: dict[str, Any] = {}
    if host["NanoCpus"]:
        limits["cpu"] = quantity_cpu(int(host["NanoCpus"]))
    if host["Memory"]:
        limits["memory"] = quantity_bytes(int(host["Memory"]))
    if plan.gpu and opts.gpus:
        limits[GPU_RESOURCE] = opts.gpus  # extended resources: the request defaults to it
    return {"limits": limits} if limits else {}


def _deployment(plan: Plan, opts: K8sOptions) -> dict[str, Any]:
    create = plan.create
    uid, gid = _user(create)
    mounts, volumes = _volumes(plan, opts)
    port = _container_port(create)
    security = create["HostConfig"]
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": create["Image"],
        "env": [{"name": k, "value": v} for k, _, v in (e.partition("=") for e in create["Env"])],
        "ports": [{"name": PORT_NAME, "containerPort": port, "protocol": "TCP"}],
        "resources": _resources(plan, opts),
        **_probes(create["Healthcheck"]),
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_PAUSE_S}}},
        "securityContext": {
            "allowPrivilegeEscalation": "no-new-privileges" not in security["SecurityOpt"],
            "readOnlyRootFilesystem": bool(security["ReadonlyRootfs"]),
            "runAsNonRoot": uid != 0,
            "capabilities": {"drop": list(security["CapDrop"])},
        },
        "volumeMounts": mounts,
    }
    if not container["resources"]:
        del container["resources"]
    pod: dict[str, Any] = {}
    if opts.runtime_class:
        pod["runtimeClassName"] = opts.runtime_class
    selector = ({GPU_NODE_LABEL: "true"} if plan.gpu else {}) | dict(opts.node_selector)
    if selector:
        pod["nodeSelector"] = dict(sorted(selector.items()))
    if plan.gpu:
        pod["tolerations"] = [{"key": GPU_TAINT, "operator": "Exists", "effect": "NoSchedule"}]
    pod |= {
        # The service never talks to the API server; no service links (NAME_PORT=tcp://... in
        # the env of every pod) either.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {"runAsNonRoot": uid != 0, "runAsUser": uid, "runAsGroup": gid,
                            "fsGroup": gid, "seccompProfile": {"type": "RuntimeDefault"}},
        "terminationGracePeriodSeconds": TERMINATION_GRACE_S,
        "containers": [container],
        "volumes": volumes,
    }
    annotations = {"prometheus.io/scrape": "true", "prometheus.io/port": str(port),
                   "prometheus.io/path": METRICS_PATH,
                   # a changed plan changes the pod template: Kubernetes rolls it out
                   LABEL_PLAN: plan.plan_hash}
    return {
        "apiVersion": FACTS["deployment"].value, "kind": "Deployment",
        "metadata": _metadata(plan, opts),
        "spec": {  # no replicas: the HPA owns the count
            "selector": {"matchLabels": _selector(plan.name)},
            "template": {"metadata": {"labels": _labels(plan.name), "annotations": annotations},
                         "spec": pod},
        },
    }


def _service(plan: Plan, opts: K8sOptions) -> dict[str, Any]:
    return {
        "apiVersion": FACTS["service"].value, "kind": "Service",
        "metadata": _metadata(plan, opts),
        "spec": {"type": "ClusterIP", "selector": _selector(plan.name), "ports": [
            {"name": PORT_NAME, "port": _container_port(plan.create), "targetPort": PORT_NAME,
             "protocol": "TCP"}]},
    }


def _pdb(plan: Plan, opts: K8sOptions) -> dict[str, Any]:
    return {
        "apiVersion": FACTS["pdb"].value, "kind": "PodDisruptionBudget",
        "metadata": _metadata(plan, opts),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": _selector(plan.name)},
                 "unhealthyPodEvictionPolicy": FACTS["pdb_unhealthy_eviction"].value},
    }


def _hpa(plan: Plan, opts: K8sOptions) -> dict[str, Any]:
    return {
        "apiVersion": FACTS["hpa"].value, "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(plan, opts),
        "spec": {
            "scaleTargetRef": {"apiVersion": FACTS["deployment"].value, "kind": "Deployment",
                               "name": plan.name},
            "minReplicas": opts.replicas,
            "maxReplicas": opts.max_replicas,
            "metrics": [{"type": "Pods", "pods": {
                "metric": {"name": METRIC},
                "target": {"type": "AverageValue", "averageValue": str(opts.target_in_flight)}}}],
        },
    }


def adapter_rules() -> dict[str, Any]:
    """prometheus-adapter's rule serving ``METRIC`` per pod to the HPA: its 1-minute average,
    from the series Prometheus labels with the pod's namespace and name."""
    return {"rules": [{
        "seriesQuery": f'{METRIC}{{namespace!="",pod!=""}}',
        "resources": {"overrides": {"namespace": {"resource": "namespace"},
                                    "pod": {"resource": "pod"}}},
        "name": {"matches": f"^{METRIC}$", "as": METRIC},
        "metricsQuery": "sum(avg_over_time(<<.Series>>{<<.LabelMatchers>>}[1m])) "
                        "by (<<.GroupBy>>)",
    }]}


def _adapter_config(plan: Plan, opts: K8sOptions) -> dict[str, Any]:
    meta = _metadata(plan, opts, "-prometheus-adapter-rules")
    meta["annotations"] = {"org.gpu-launcher.note": (
        "prometheus-adapter's rules for the HPA's Pods metric: merge rules[] into the adapter's "
        "--config file (Helm chart: values rules.custom)")}
    return {"apiVersion": FACTS["configmap"].value, "kind": "ConfigMap", "metadata": meta,
            "data": {"config.yaml": _dump(adapter_rules())}}


def _service_monitor(plan: Plan, opts: K8sOptions) -> dict[str, Any]:
    return {
        "apiVersion": FACTS["servicemonitor"].value, "kind": "ServiceMonitor",
        "metadata": _metadata(plan, opts),
        "spec": {"selector": {"matchLabels": _selector(plan.name)},
                 "endpoints": [{"port": PORT_NAME, "path": METRICS_PATH,
                                "interval": SCRAPE_INTERVAL}]},
    }


def render_manifests(plan: Plan, opts: K8sOptions) -> list[dict[str, Any]]:
    """The documents ``kubectl apply -f`` takes, in the order it should create them."""
    docs = [_service(plan, opts), _deployment(plan, opts), _pdb(plan, opts), _hpa(plan, opts),
            _adapter_config(plan, opts)]
    if opts.service_monitor:
        docs.append(_service_monitor(plan, opts))
    return docs


# --- YAML -----------------------------------------------------------------------------------


@functools.cache
def _dumper() -> Any:
    """PyYAML's safe dumper, block style, multi-line strings as literal blocks. Imported here,
    not at the top: every ``launcher`` command imports this module with its parser."""
    import yaml

    class Dumper(yaml.SafeDumper):  # type: ignore[misc]  # PyYAML ships no types
        pass

    def text(dumper: Any, value: str) -> Any:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return Dumper


def _dump(doc: Any) -> str:
    import yaml

    return str(yaml.dump(doc, Dumper=_dumper(), sort_keys=False, default_flow_style=False,
                         width=4096, allow_unicode=True))


def to_yaml(docs: Sequence[Mapping[str, Any]], header: Sequence[str] = ()) -> str:
    """Multi-document YAML, byte for byte the same for the same documents."""
    lines = "".join(f"# {h}\n" for h in header)
    return lines + "".join(f"---\n{_dump(dict(d))}" for d in docs)
