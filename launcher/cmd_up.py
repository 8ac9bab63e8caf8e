"""launcher up: plan (probe the GPUs, choose the image), build if needed, run, wait.

``--dry-run`` prints the plan (``--json``: the exact Engine API create body) and touches
nothing. Explanations and warnings go to stderr, data to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from typing import Any

from launcher._engine import is_remote_engine
from launcher._engine_memory import cache_dir
from launcher._errors import UsageError
from launcher._help import summary
from launcher._options import (
    add_build_options,
    add_run_options,
    plan_options_from_args,
    timeout_from_args,
)
from launcher._plan import Plan, make_plan, report_plan
from launcher._remote_probe import probe_for
from launcher._up import UpPolicy, up
from service.nvml import load_nvml

__all__ = ["add_parser", "format_plan", "run"]


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "up", help="build (if needed) and start the service container",
        description=summary(__doc__))
    add_run_options(parser)
    add_build_options(parser)
    group = parser.add_argument_group("up")
    build = group.add_mutually_exclusive_group()
    build.add_argument("--build", action="store_true", help="build even if the image exists")
    build.add_argument("--no-build", action="store_true",
                       help="never build: fail if the image is missing")
    group.add_argument("--timeout", default="180", metavar="SECONDS",
                       help="how long to wait for the service to be ready (180)")
    group.add_argument("--dry-run", action="store_true",
                       help="print the plan and touch nothing")
    group.add_argument("--json", action="store_true",
                       help="with --dry-run: the plan as JSON, and where each setting came "
                            "from (settings: a launcher.toml or flag)")
    # Filled by the command line's parse (launcher._cli): setting → its launcher.toml or "flag".
    parser.set_defaults(func=run, settings={})


def format_plan(plan: Plan) -> str:
    host = plan.create["HostConfig"]
    ports = ", ".join(f"{b['HostIp'] or '0.0.0.0'}:{b['HostPort'] or '*'}->{port}"
                      for port, binds in host["PortBindings"].items() for b in binds)
    lines = [
        f"name:    {plan.name}",
        f"image:   {plan.image} ({plan.build.dockerfile} from {plan.build.base_image})",
        f"gpus:    {json.dumps(host['DeviceRequests']) if plan.gpu else 'none (CPU)'}",
        f"ports:   {ports}",
        f"volumes: {', '.join(host['Binds'])}",
    ]
    if plan.predictor is not None:
        lines.insert(2, f"predictor: {plan.predictor.source.predictor} from "
                        f"{plan.predictor.source.code} on {plan.predictor.service_image}")
    return "\n".join(lines)


def run(args: argparse.Namespace, load: Callable[[], Any] = load_nvml) -> int:
    if args.json and not args.dry_run:
        raise UsageError("--json prints the plan, and needs --dry-run",
                         hint="add --dry-run: launcher up --dry-run --json")
    timeout = timeout_from_args(args.timeout)
    remote = is_remote_engine(os.environ.get("DOCKER_HOST"))
    # Every flag (--model's file too) is checked here, before the engine is touched.
    options = plan_options_from_args(args, os.environ, os.getcwd(), remote=remote)
    # A CPU plan needs no probe; --no-probe takes --gpus as given; a remote engine is probed
    # on that engine.
    probe = probe_for(options, os.environ, args.dry_run, load)
    plan = make_plan(options, probe)  # once: up executes this plan (or its CPU fallback)
    report_plan(plan)
    if args.dry_run:
        if args.json:
            print(json.dumps({**plan.to_json(), "settings": args.settings}, indent=2))
        else:
            print(format_plan(plan))
        return 0
    policy = UpPolicy(build=args.build, no_build=args.no_build, timeout=timeout,
                      remote=remote,
                      state_dir=cache_dir(os.environ))
    return up(plan, options, policy, probe)
