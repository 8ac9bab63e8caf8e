"""``launcher version``: this launcher's version and what it speaks: the torch it pins, the CUDA
builds of that torch it can choose, and the Engine API version of the bodies it sends."""

from __future__ import annotations

import argparse
import json
from typing import Any

from launcher import __version__
from launcher._cuda import TORCH_VERSION, cuda_table, format_version
from launcher._errors import EXIT_OK
from launcher._plan import ENGINE_API_VERSION

__all__ = ["add_parser", "run", "version_info"]


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "version", help="print the launcher's version (--json: what it speaks)",
        description="Print the launcher's version; --json adds the torch it pins, the CUDA "
                    "builds of that torch it chooses from, and the Engine API version it speaks.")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.set_defaults(func=run)


def version_info() -> dict[str, Any]:
    table = cuda_table()
    return {
        "launcher": __version__,
        "torch": TORCH_VERSION,
        "torch_cpu_index": table.cpu_index_url,
        "cuda": [{"wheel": v.wheel, "cuda": format_version(v.cuda), "stable": v.stable,
                  "index_url": v.index_url} for v in table.variants],
        "engine_api": ENGINE_API_VERSION,
    }


def run(args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps(version_info(), indent=2))
    else:
        print(f"launcher {__version__}")
    return EXIT_OK
