"""launcher probe [--json]: the host's NVIDIA driver and GPUs, read with NVML, and per GPU the
wheels of the pinned torch that have kernels for it.

No NVML (no driver, no library) is not an error: exit 0, an empty list, the reason on stderr.
The JSON is what ``--probe-file`` reads on another host.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from launcher._cuda import cuda_table, wheel_coverage
from launcher._help import summary
from launcher._probe import Probe, probe_host
from service.nvml import load_nvml

__all__ = ["add_parser", "format_probe", "probe_json", "run"]


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("probe", help="show the NVIDIA driver and GPUs (NVML)",
                                   description=summary(__doc__))
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.set_defaults(func=run)


def _wheels(capability: tuple[int, int]) -> list[dict[str, Any]]:
    return [{"wheel": v.wheel, "code": how, "stable": v.stable}
            for v, how in wheel_coverage(cuda_table(), capability)]


def probe_json(probe: Probe) -> dict[str, Any]:
    """The probe, each GPU with ``torch_wheels``: the pinned torch's variants that cover it."""
    data = probe.to_json()
    for gpu, info in zip(data["gpus"], probe.gpus, strict=True):
        gpu["torch_wheels"] = _wheels(info.compute_capability)
    return data


def _wheel_line(capability: tuple[int, int]) -> str:
    table = cuda_table()
    found = [f"{w['wheel']} ({w['code']}{'' if w['stable'] else ', experimental'})"
             for w in _wheels(capability)]
    return (f"  torch {table.torch_version} wheels: " + ", ".join(found) if found
            else f"  torch {table.torch_version} wheels: none has kernels for it")


def format_probe(probe: Probe) -> str:
    """A short table for people: one line for the driver, one per GPU."""
    if probe.driver_version is None:
        return "no NVIDIA GPUs (no NVML)"
    cuda = probe.cuda_driver_version
    lines = [f"driver {probe.driver_version}, CUDA ≤ {cuda[0]}.{cuda[1]}" if cuda
             else f"driver {probe.driver_version}"]
    for g in probe.gpus:
        mig = {True: ", MIG on", False: ", MIG off", None: ""}[g.mig_enabled]
        lines.append(f"GPU {g.index}: {g.name} (sm_{g.compute_capability[0]}"
                     f"{g.compute_capability[1]}, {g.memory_total / 1024**3:.0f} GiB{mig}) "
                     f"{g.uuid}")
        lines.append(_wheel_line(g.compute_capability))
    if not probe.gpus:
        lines.append("no GPUs")
    return "\n".join(lines)


def run(args: argparse.Namespace, load: Callable[[], Any] = load_nvml) -> int:
    probe = probe_host(load)
    if probe.reason:
        print(f"launcher: no GPUs: {probe.reason}", file=sys.stderr)
    for warning in probe.warnings:
        print(f"launcher: warning: {warning}", file=sys.stderr)
    print(json.dumps(probe_json(probe), indent=2) if args.json else format_probe(probe))
    return 0
