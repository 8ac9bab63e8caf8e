"""`launcher render k8s`: the manifests from up's plan, validated by kubernetes-validate in
strict mode for the oldest Kubernetes we claim (1.30) and the newest it ships; the
ServiceMonitor (a CRD, no schema there) checked for the fields its CRD requires; flag values
table-tested with their exact error text; the bytes the same on every run."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_validate import utils as kv
from prometheus_client import CollectorRegistry

from launcher import _k8s_names as k8s_names
from launcher._cli import build_parser, main
from launcher._k8s import (
    FACTS,
    METRIC,
    OLDEST_KUBERNETES,
    PRESTOP_PAUSE_S,
    TERMINATION_GRACE_S,
    adapter_rules,
)
from launcher._options import STOP_GRACE
from launcher._plan import HEALTH_START_PERIOD_S
from launcher._probe import probe_host
from launcher.cmd_probe import probe_json
from launcher.cmd_render import _HINTS as RENDER_HINTS
from service._metrics import ServiceMetrics
from tests.conftest import error_text
from tests.fakenvml import FakeGpu, FakeNvml, loader

# The oldest we claim (launcher/data/kubernetes.json) and the newest the pinned
# kubernetes-validate ships.
OLDEST = f"{OLDEST_KUBERNETES}.0"
NEWEST = kv.latest_version()
GPU_FLAGS = ["--gpus", "2", "--namespace", "inference", "--runtime-class", "nvidia",
             "--node-selector", "nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3",
             "--models-pvc", "models", "--replicas", "2", "--max-replicas", "8", "--cpus", "7.5",
             "--memory", "64g", "--shm-size", "8g", "-e", "LOG_LEVEL=debug",
             "--image", "registry.example.com/team/predictor:1.0", "--service-monitor"]


def render(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[str, list[dict[str, Any]]]:
    code = main(["render", "k8s", *argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out, [d for d in yaml.safe_load_all(out) if d]


def by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in docs}


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (c,) = by_kind(docs)["Deployment"]["spec"]["template"]["spec"]["containers"]
    return c  # type: ignore[no-any-return]


# --- the facts table ------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(FACTS))
def test_every_kubernetes_fact_names_its_source(key: str) -> None:
    fact = FACTS[key]
    assert fact.value and fact.source.startswith("https://"), fact


# --- valid for Kubernetes -------------------------------------------------------------------


@pytest.mark.parametrize("version", [OLDEST, NEWEST])
@pytest.mark.parametrize("argv", [[], ["--gpus", "1"], GPU_FLAGS], ids=["cpu", "gpu", "gpu-all-flags"])
def test_every_builtin_document_validates_strictly(argv: list[str], version: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    _, docs = render(argv, capsys)
    builtin = [d for d in docs if d["kind"] != "ServiceMonitor"]
    assert {d["kind"] for d in builtin} == {"Service", "Deployment", "PodDisruptionBudget",
                                            "HorizontalPodAutoscaler", "ConfigMap"}
    for doc in builtin:
        assert kv.validate(doc, version, strict=True) == version.rsplit(".", 1)[0], doc["kind"]


def test_strict_validation_catches_a_misspelled_field(capsys: pytest.CaptureFixture[str]) -> None:
    """The validator is not a rubber stamp: one unknown field in the pod fails it."""
    _, docs = render([], capsys)
    deployment = copy.deepcopy(by_kind(docs)["Deployment"])
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kv.ValidationError, match="readinesProbe"):
        kv.validate(deployment, NEWEST, strict=True)


def test_service_monitor_has_what_its_crd_requires(capsys: pytest.CaptureFixture[str]) -> None:
    """prometheus-operator's CRD (example/prometheus-operator-crd/
    monitoring.coreos.com_servicemonitors.yaml) requires spec, spec.selector; an endpoint names
    the Service's port by name. The selector must pick our Service."""
    _, docs = render(["--service-monitor", "--namespace", "inference"], capsys)
    kinds = by_kind(docs)
    monitor, service = kinds["ServiceMonitor"], kinds["Service"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["name"] and monitor["metadata"]["namespace"] == "inference"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector and selector.items() <= service["metadata"]["labels"].items()
    ports = {p["name"] for p in service["spec"]["ports"]}
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["http"] and "http" in ports
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


def test_without_the_flag_there_is_no_service_monitor(capsys: pytest.CaptureFixture[str]) -> None:
    _, docs = render([], capsys)
    assert "ServiceMonitor" not in by_kind(docs)


# --- what the documents say -----------------------------------------------------------------


def test_gpu_pods_ask_for_gpus_and_land_on_gpu_nodes(capsys: pytest.CaptureFixture[str]) -> None:
    _, docs = render(GPU_FLAGS, capsys)
    pod = by_kind(docs)["Deployment"]["spec"]["template"]["spec"]
    c = container(docs)
    assert c["resources"] == {"limits": {"cpu": "7500m", "memory": "64Gi", "nvidia.com/gpu": 2}}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists",
                                   "effect": "NoSchedule"}]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true",
                                   "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert pod["runtimeClassName"] == "nvidia"
    assert {"name": "DEVICE", "value": "cuda"} in c["env"]
    assert {"name": "LOG_LEVEL", "value": "debug"} in c["env"]
    assert c["image"] == "registry.example.com/team/predictor:1.0"


def test_cpu_pods_ask_for_nothing_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    _, docs = render([], capsys)
    pod = by_kind(docs)["Deployment"]["spec"]["template"]["spec"]
    assert "resources" not in container(docs)
    assert not {"tolerations", "nodeSelector", "runtimeClassName"} & set(pod)
    assert container(docs)["env"] == [{"name": "DEVICE", "value": "cpu"}]


def test_pods_are_restricted(capsys: pytest.CaptureFixture[str]) -> None:
    _, docs = render([], capsys)
    pod = by_kind(docs)["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 10001,
                                      "runAsGroup": 10001, "fsGroup": 10001,
                                      "seccompProfile": {"type": "RuntimeDefault"}}
    assert container(docs)["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]}}
    assert pod["automountServiceAccountToken"] is False


@pytest.mark.parametrize(("argv", "models"), [
    ([], {"emptyDir": {}}),
    (["--models-pvc", "models"], {"persistentVolumeClaim": {"claimName": "models",
                                                            "readOnly": True}}),
], ids=["no-claim", "claim"])
def test_volumes(argv: list[str], models: dict[str, Any],
                 capsys: pytest.CaptureFixture[str]) -> None:
    _, docs = render([*argv, "--shm-size", "2g"], capsys)
    volumes = {v["name"]: {k: x for k, x in v.items() if k != "name"}
               for v in by_kind(docs)["Deployment"]["spec"]["template"]["spec"]["volumes"]}
    assert volumes == {"tmp": {"emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
                       "dshm": {"emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}},
                       "models": models, "data": {"emptyDir": {}}}
    mounts = {m["mountPath"]: m["name"] for m in container(docs)["volumeMounts"]}
    assert mounts == {"/tmp": "tmp", "/dev/shm": "dshm", "/models": "models", "/data": "data"}


def test_probes_wait_for_the_model_then_gate_and_restart(
        capsys: pytest.CaptureFixture[str]) -> None:
    _, docs = render([], capsys)
    c = container(docs)
    startup, ready, live = c["startupProbe"], c["readinessProbe"], c["livenessProbe"]
    assert (startup["httpGet"], ready["httpGet"], live["httpGet"]) == (
        {"path": "/readyz", "port": "http"}, {"path": "/readyz", "port": "http"},
        {"path": "/healthz", "port": "http"})
    assert startup["periodSeconds"] * startup["failureThreshold"] >= HEALTH_START_PERIOD_S


def test_termination_outlasts_the_pause_and_the_drain(capsys: pytest.CaptureFixture[str]) -> None:
    _, docs = render([], capsys)
    pod = by_kind(docs)["Deployment"]["spec"]["template"]["spec"]
    assert container(docs)["lifecycle"] == {"preStop": {"sleep": {"seconds": PRESTOP_PAUSE_S}}}
    assert pod["terminationGracePeriodSeconds"] == TERMINATION_GRACE_S
    assert TERMINATION_GRACE_S > PRESTOP_PAUSE_S + STOP_GRACE


def test_autoscaler_scales_on_a_metric_the_service_exports_and_the_adapter_serves(
        capsys: pytest.CaptureFixture[str]) -> None:
    _, docs = render(["--replicas", "2", "--max-replicas", "6", "--target-in-flight", "24"],
                     capsys)
    kinds = by_kind(docs)
    hpa = kinds["HorizontalPodAutoscaler"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 6)
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": "gpu-launcher"}
    assert hpa["metrics"] == [{"type": "Pods", "pods": {
        "metric": {"name": METRIC}, "target": {"type": "AverageValue", "averageValue": "24"}}}]
    # the HPA owns the count, so a re-apply does not reset it
    assert "replicas" not in kinds["Deployment"]["spec"]
    rules = yaml.safe_load(kinds["ConfigMap"]["data"]["config.yaml"])
    assert rules == adapter_rules()
    (rule,) = rules["rules"]
    assert rule["name"]["as"] == METRIC and rule["seriesQuery"].startswith(METRIC + "{")
    registry = CollectorRegistry()
    ServiceMetrics(registry, nvml_loader=None)
    assert registry.get_sample_value(METRIC) == 0.0


def test_scraping_annotations_and_the_plan_label(capsys: pytest.CaptureFixture[str]) -> None:
    _, docs = render([], capsys)
    annotations = by_kind(docs)["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert {k: v for k, v in annotations.items() if k.startswith("prometheus.io/")} == {
        "prometheus.io/scrape": "true", "prometheus.io/port": "8000",
        "prometheus.io/path": "/metrics"}
    assert main(["up", "--dry-run", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert annotations["org.gpu-launcher.plan"] == plan["create"]["Labels"]["org.gpu-launcher.plan"]


def test_the_same_flags_give_the_same_bytes(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    first, _ = render(GPU_FLAGS, capsys)
    second, _ = render(GPU_FLAGS, capsys)
    assert first == second and first.count("\n---\n") == 6  # six documents
    out = tmp_path / "k8s.yaml"
    assert main(["render", "k8s", *GPU_FLAGS, "-o", str(out)]) == 0
    assert capsys.readouterr().out == "" and out.read_text() == first


def test_the_default_image_is_the_one_up_runs_with_a_warning(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["up", "--dry-run", "--json", "--no-probe", "--gpus", "1"]) == 0
    image = json.loads(capsys.readouterr().out)["image"]
    assert main(["render", "k8s", "--gpus", "1"]) == 0
    out, err = capsys.readouterr()
    assert container([d for d in yaml.safe_load_all(out) if d])["image"] == image
    assert (f"launcher: warning: {image} is this engine's own tag; a cluster cannot pull it: "
            "push it (launcher push DEST) and render with --image DEST") in err.splitlines()


def test_a_nodes_probe_file_picks_the_image_as_it_does_for_up(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A GPU node's `launcher probe --json` (H100, driver 580) gives the image `up` would run
    there, not the unprobed default."""
    probe = tmp_path / "node.json"
    probe.write_text(json.dumps(probe_json(probe_host(loader(FakeNvml(
        [FakeGpu(uuid="GPU-h100")], "580.65.06", 13000))))))
    assert main(["up", "--dry-run", "--json", "--gpus", "1", "--probe-file", str(probe)]) == 0
    planned = json.loads(capsys.readouterr().out)
    assert main(["up", "--dry-run", "--json", "--gpus", "1", "--no-probe"]) == 0
    unprobed = json.loads(capsys.readouterr().out)["image"]
    _, docs = render(["--gpus", "1", "--probe-file", str(probe)], capsys)
    assert container(docs)["image"] == planned["image"] != unprobed
    assert planned["build_args"]["TORCH_INDEX_URL"].endswith("/cu130")


def test_unwritable_output_exits_1_with_a_hint(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "missing" / "k8s.yaml"
    assert main(["render", "k8s", "-o", str(target)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[-2:] == [f"launcher: error: -o {target}: cannot write it: No such file or directory",
                          "hint: -o names a file in a folder that exists"]


# --- bad flags ------------------------------------------------------------------------------

_DNS1035 = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start "
            "with an alphabetic character, and end with an alphanumeric character (regex used "
            "for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")
_SUBDOMAIN = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
              "characters, '-' or '.', and must start and end with an alphanumeric character "
              "(regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]"
              "([-a-z0-9]*[a-z0-9])?)*')")
BAD_FLAGS = [
    ("gpus", ["--gpus", "all"], 'invalid argument "all" for "--gpus" flag: not an integer'),
    ("gpus-negative", ["--gpus", "-1"],
     'invalid argument "-1" for "--gpus" flag: must be at least 0'),
    ("replicas", ["--replicas", "0"],
     'invalid argument "0" for "--replicas" flag: must be at least 1'),
    ("max-below-min", ["--replicas", "3", "--max-replicas", "2"],
     'invalid argument "2" for "--max-replicas" flag: less than --replicas 3'),
    ("target", ["--target-in-flight", "x"],
     'invalid argument "x" for "--target-in-flight" flag: not an integer'),
    ("name", ["--name", "My_Svc"], f'invalid argument "My_Svc" for "--name" flag: {_DNS1035}'),
    ("name-digit", ["--name", "1svc"], f'invalid argument "1svc" for "--name" flag: {_DNS1035}'),
    ("namespace-long", ["--namespace", "n" * 64],
     (f'invalid argument "{"n" * 64}" for "--namespace" flag: must be no more than 63 '
      "characters (a lowercase RFC 1123 label)")),
    ("runtime-class", ["--runtime-class", "Nvidia"],
     f'invalid argument "Nvidia" for "--runtime-class" flag: {_SUBDOMAIN}'),
    ("models-pvc", ["--models-pvc", "models/"],
     f'invalid argument "models/" for "--models-pvc" flag: {_SUBDOMAIN}'),
    ("node-selector-no-eq", ["--node-selector", "gpu"],
     'invalid argument "gpu" for "--node-selector" flag: expected KEY=VALUE'),
    ("node-selector-value", ["--node-selector", "a=b c"],
     ('invalid argument "a=b c" for "--node-selector" flag: a valid label must be an empty '
      "string or consist of alphanumeric characters, '-', '_' or '.', and must start and end "
      "with an alphanumeric character, at most 63 characters")),
    ("image", ["--image", "reg.example.com/a b"],
     'invalid argument "reg.example.com/a b" for "--image" flag: invalid reference format'),
    ("memory", ["--memory", "lots"],
     'invalid argument "lots" for "--memory" flag: invalid size: \'lots\''),
]


def _flags(parser: Any) -> set[str]:
    """Every option string of every (sub)command."""
    found = {s for a in parser._actions for s in a.option_strings}
    for action in parser._actions:
        choices = getattr(action, "choices", None)
        if isinstance(choices, dict):  # subcommands (a flag's choices are a list or tuple)
            for sub in choices.values():
                if hasattr(sub, "_actions"):
                    found |= _flags(sub)
    return found


@pytest.mark.parametrize(("argv", "message"), [r[1:] for r in BAD_FLAGS],
                         ids=[r[0] for r in BAD_FLAGS])
def test_bad_flags_exit_2_echo_the_value_and_hint_a_real_flag(
        argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "k8s", *argv]) == 2
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert (out, lines[0]) == ("", f"launcher: error: {message}")
    assert lines[1].startswith("hint: ") and len(lines) == 2
    named = {w.strip(",.;:()'\"") for w in lines[1].split() if w.startswith("--")}
    assert named <= _flags(build_parser()), named
    if argv[0] in RENDER_HINTS:  # render's own flags: the hint shows that flag in use
        assert argv[0] in named, lines[1]


# --- the pure parsers -----------------------------------------------------------------------


_NAME_PART = ("name part must consist of alphanumeric characters, '-', '_' or '.', and must "
              "start and end with an alphanumeric character, at most 63 characters")
_VALUE = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' "
          "or '.', and must start and end with an alphanumeric character, at most 63 characters")


@pytest.mark.parametrize(("value", "expected", "error"), [
    ("gpu=true", ("gpu", "true"), ""),
    ("nvidia.com/gpu.present=true", ("nvidia.com/gpu.present", "true"), ""),
    ("empty=", ("empty", ""), ""),
    ("a_b.c-d=X_y.z-1", ("a_b.c-d", "X_y.z-1"), ""),
    ("=x", None, _NAME_PART),
    ("Bad_Prefix/x=y", None, "prefix part must be a lowercase RFC 1123 subdomain"),
    (f"{'k' * 64}=v", None, _NAME_PART),
    ("k=-v", None, _VALUE),
], ids=["plain", "prefixed", "empty-value", "punctuation", "no-key", "bad-prefix", "long-key",
        "value-starts-with-dash"])
def test_parse_node_selector(value: str, expected: tuple[str, str] | None, error: str) -> None:
    if error:
        assert error_text(k8s_names.K8sValueError, k8s_names.parse_node_selector, value) == error
    else:
        assert k8s_names.parse_node_selector(value) == expected


def assert_keeps_or_refuses(parse: Callable[..., str], value: str, ok: bool, **kwargs: Any) -> None:
    """A valid name comes back as it was; an invalid one is a K8sValueError."""
    if ok:
        assert parse(value, **kwargs) == value
    else:
        with pytest.raises(k8s_names.K8sValueError):
            parse(value, **kwargs)


@pytest.mark.parametrize(("value", "ok"), [
    ("predictor", True), ("a", True), ("a-1", True), ("1a", False), ("a-", False),
    ("A", False), ("a.b", False), ("a" * 63, True), ("a" * 64, False),
], ids=["word", "one-letter", "dash-digit", "digit-first", "dash-last", "upper", "dot",
        "63", "64"])
def test_parse_dns1035_label(value: str, ok: bool) -> None:
    assert_keeps_or_refuses(k8s_names.parse_dns_label, value, ok, dns1035=True)


@pytest.mark.parametrize(("value", "ok"), [
    ("1a", True), ("nvidia", True), ("a.b-c", True), ("-a", False), ("a..b", False),
    ("a" * 254, False),
], ids=["digit-first", "word", "dots", "dash-first", "empty-label", "254"])
def test_parse_dns_subdomain(value: str, ok: bool) -> None:
    assert_keeps_or_refuses(k8s_names.parse_dns_subdomain, value, ok)


@pytest.mark.parametrize(("value", "ok"), [
    ("predictor", True), ("registry.example.com:5000/team/predictor:1.0", True),
    ("127.0.0.1:5000/p@sha256:" + "a" * 64, True), ("p@sha256:abc", False), ("a b", False),
    ("reg//p", False), ("", False), ("team/Predictor", False), ("team/p:-1", False),
], ids=["short", "registry-port-tag", "digest", "short-digest", "space", "double-slash", "empty",
        "upper-case-repository", "tag-starting-with-dash"])
def test_parse_image(value: str, ok: bool) -> None:
    assert_keeps_or_refuses(k8s_names.parse_image, value, ok)


@pytest.mark.parametrize(("value", "minimum", "expected"), [
    ("0", 0, 0), ("3", 1, 3), ("0", 1, "must be at least 1"), ("1.5", 1, "not an integer"),
    ("", 1, "not an integer"),
], ids=["zero-ok", "three", "zero-refused", "fraction", "empty"])
def test_parse_count(value: str, minimum: int, expected: int | str) -> None:
    if isinstance(expected, int):
        assert k8s_names.parse_count(value, minimum) == expected
    else:
        with pytest.raises(k8s_names.K8sValueError, match=f"^{expected}$"):
            k8s_names.parse_count(value, minimum)


@pytest.mark.parametrize(("n", "expected"), [
    (1 << 30, "1Gi"), (8 << 30, "8Gi"), (1536 << 20, "1536Mi"), (6 << 20, "6Mi"),
    (1000, "1000"), (1024, "1Ki"), (3 << 40, "3Ti"),
], ids=["1g", "8g", "1.5g", "6m", "1000", "1k", "3t"])
def test_quantity_bytes(n: int, expected: str) -> None:
    assert k8s_names.quantity_bytes(n) == expected


@pytest.mark.parametrize(("nano", "expected"), [
    (2_000_000_000, "2"), (2_500_000_000, "2500m"), (500_000, "1m"), (1_001_000_000, "1001m"),
], ids=["whole", "fraction", "below-a-millicore", "millicores"])
def test_quantity_cpu(nano: int, expected: str) -> None:
    assert k8s_names.quantity_cpu(nano) == expected
