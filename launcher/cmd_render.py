"""launcher render k8s: the Kubernetes manifests for what ``launcher up`` would run.

The same plan as ``up`` (made without a probe: the cluster's GPUs are not this host's) becomes a
Deployment, a ClusterIP Service, a PodDisruptionBudget, a HorizontalPodAutoscaler on the pods'
in-flight requests, the prometheus-adapter rule that serves that metric, and with
``--service-monitor`` a ServiceMonitor. Multi-document YAML on stdout (or ``-o FILE``), the same
bytes for the same flags; the plan's explanation and warnings on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from launcher._errors import LauncherError, UsageError
from launcher._help import summary
from launcher._k8s import GPU_RESOURCE, K8sOptions, render_manifests, to_yaml
from launcher._k8s_names import (
    K8sValueError,
    parse_count,
    parse_dns_label,
    parse_dns_subdomain,
    parse_image,
    parse_node_selector,
)
from launcher._options import (
    DEFAULT_NAME,
    add_env_and_limits,
    plan_options_from_args,
    run_defaults,
)
from launcher._plan import make_plan, report_plan

__all__ = ["add_parser", "k8s_options_from_args", "run"]

_HINTS = {
    "--gpus": "a whole number of GPUs per pod, e.g. --gpus 1 (0: a CPU pod)",
    "--replicas": "a whole number of pods, at least 1, e.g. --replicas 2",
    "--max-replicas": "at least --replicas, e.g. --replicas 2 --max-replicas 8",
    "--target-in-flight": "in-flight requests per pod the autoscaler aims at, e.g. "
                          "--target-in-flight 16",
    "--name": "lower case letters, digits and '-', starting with a letter, e.g. --name predictor",
    "--namespace": "lower case letters, digits and '-', e.g. --namespace inference",
    "--runtime-class": "the name of a RuntimeClass in the cluster, e.g. --runtime-class nvidia",
    "--models-pvc": "the name of a PersistentVolumeClaim in the namespace, e.g. "
                    "--models-pvc models",
    "--node-selector": "a node label as KEY=VALUE, e.g. --node-selector "
                       "nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3",
    "--image": "what the cluster pulls, e.g. --image registry.example.com/team/predictor:1.0 "
               "(launcher push prints it)",
}


def add_parser(subparsers: Any) -> None:
    render = subparsers.add_parser("render", help="render deployment files for a cluster",
                                   description="Render what launcher up runs for another "
                                               "runtime.")
    kinds = render.add_subparsers(dest="kind", metavar="KIND")
    kinds.required = True
    parser = kinds.add_parser("k8s", help="Kubernetes manifests (multi-document YAML)",
                              description=summary(__doc__))
    group = parser.add_argument_group("Kubernetes")
    group.add_argument("--image", metavar="IMG",
                       help="the image the cluster pulls (default: the one launcher up would "
                            "run for these flags; push it first: launcher push)")
    group.add_argument("--gpus", default="0", metavar="N",
                       help=f"GPUs per pod, as the {GPU_RESOURCE} limit (0: a CPU pod)")
    group.add_argument("--replicas", default="1", metavar="R",
                       help="pods at least (the autoscaler's minimum) (1)")
    group.add_argument("--max-replicas", metavar="M",
                       help="pods at most (the autoscaler's maximum) (4, or R when larger)")
    group.add_argument("--target-in-flight", default="16", metavar="N",
                       help="the autoscaler adds pods above N in-flight requests per pod (16)")
    group.add_argument("--namespace", metavar="NS", help="metadata.namespace (default: none, "
                                                         "kubectl's current namespace)")
    group.add_argument("--name", default=DEFAULT_NAME, metavar="N",
                       help=f"name of every object ({DEFAULT_NAME})")
    group.add_argument("--runtime-class", metavar="NAME", help="the pods' runtimeClassName")
    group.add_argument("--node-selector", action="append", default=[], metavar="K=V",
                       help="a node label the pods need (repeatable; GPU pods also need "
                            "nvidia.com/gpu.present=true)")
    group.add_argument("--models-pvc", metavar="NAME",
                       help="mount /models from this PersistentVolumeClaim (read-only)")
    group.add_argument("--service-monitor", action="store_true",
                       help="also a ServiceMonitor (Prometheus Operator)")
    group.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    add_env_and_limits(parser.add_argument_group("container (as launcher up)"))
    image = parser.add_argument_group("image (as launcher up, for the default --image)")
    image.add_argument("--base-image", metavar="IMAGE", help="base image launcher up builds on")
    image.add_argument("--wheelhouse", metavar="DIR", type=Path,
                       help="the wheelhouse launcher up builds with")
    image.add_argument("--cuda", metavar="X.Y", help="pin the CUDA version of a GPU image")
    image.add_argument("--probe-file", metavar="FILE", type=Path,
                       help="choose the CUDA image for the GPU nodes FILE describes (a node's "
                            "'launcher probe --json'; default: the unprobed choice)")
    parser.set_defaults(func=run)


def _value(flag: str, value: str, parse: Callable[[str], Any]) -> Any:
    try:
        return parse(value)
    except K8sValueError as exc:
        raise UsageError(f'invalid argument "{value}" for "{flag}" flag: {exc}',
                         hint=_HINTS[flag]) from None


def k8s_options_from_args(args: argparse.Namespace) -> K8sOptions:
    """Render's own flags, parsed; a bad value → :class:`UsageError` echoing it (exit 2)."""
    replicas = _value("--replicas", args.replicas, lambda v: parse_count(v, 1))
    if args.max_replicas is None:
        max_replicas = max(4, replicas)
    else:
        max_replicas = _value("--max-replicas", args.max_replicas, lambda v: parse_count(v, 1))
        if max_replicas < replicas:
            raise UsageError(f'invalid argument "{args.max_replicas}" for "--max-replicas" '
                             f"flag: less than --replicas {replicas}",
                             hint=_HINTS["--max-replicas"])
    return K8sOptions(
        gpus=_value("--gpus", args.gpus, lambda v: parse_count(v, 0)),
        replicas=replicas,
        max_replicas=max_replicas,
        namespace=(_value("--namespace", args.namespace, parse_dns_label)
                   if args.namespace is not None else None),
        runtime_class=(_value("--runtime-class", args.runtime_class, parse_dns_subdomain)
                       if args.runtime_class is not None else None),
        node_selector=dict(_value("--node-selector", s, parse_node_selector)
                           for s in args.node_selector),
        models_pvc=(_value("--models-pvc", args.models_pvc, parse_dns_subdomain)
                    if args.models_pvc is not None else None),
        service_monitor=bool(args.service_monitor),
        target_in_flight=_value("--target-in-flight", args.target_in_flight,
                                lambda v: parse_count(v, 1)),
    )


def _up_args(args: argparse.Namespace, opts: K8sOptions, image: str | None
             ) -> argparse.Namespace:
    """``launcher up``'s flags as render has them: its GPUs as a count, ``--image`` as up's
    ``--tag``, no probe of this host (a node's ``--probe-file`` at most), nothing published or
    bound on a host."""
    return argparse.Namespace(**{
        **run_defaults(), **vars(args), "gpus": [str(opts.gpus)] if opts.gpus else [],
        "tag": image, "no_probe": args.probe_file is None})


def _write(path: str, text: str) -> None:
    try:
        Path(path).write_text(text)
    except OSError as exc:
        raise LauncherError(f"-o {path}: cannot write it: {exc.strerror}",
                            hint="-o names a file in a folder that exists") from None


def run(args: argparse.Namespace) -> int:
    _value("--name", args.name, lambda v: parse_dns_label(v, dns1035=True))
    opts = k8s_options_from_args(args)
    image = _value("--image", args.image, parse_image) if args.image is not None else None
    options = plan_options_from_args(_up_args(args, opts, image), os.environ, os.getcwd())
    # A node's probe file, or none: no --no-probe flag here, a cluster's GPUs are never this
    # host's to probe.
    plan = make_plan(options, options.build.probed, unprobed="a cluster")
    report_plan(plan)
    if image is None:
        print(f"launcher: warning: {plan.image} is this engine's own tag; a cluster cannot pull "
              "it: push it (launcher push DEST) and render with --image DEST", file=sys.stderr)
    text = to_yaml(render_manifests(plan, opts), header=(
        f"launcher render k8s: {plan.image} (plan {plan.plan_hash})",
        "kubectl apply -f FILE; the HPA needs prometheus-adapter with the rules in the ConfigMap"))
    if args.output and args.output != "-":
        _write(args.output, text)
        print(f"launcher: wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
