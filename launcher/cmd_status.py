"""launcher status [--name N] [--json]: the containers this launcher manages, with their image,
health, ports, GPUs and uptime."""

from __future__ import annotations

import argparse
import json
import os
from datetime import datetime, timezone
from typing import Any

from launcher._lifecycle import format_status, status_row
from launcher._plan import LABEL_MANAGED, LABEL_NAME
from launcher._up import connect

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("status", help="list the containers launcher manages",
                                   description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--name", help="only this container")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    labels = {LABEL_MANAGED: "true"} | ({LABEL_NAME: args.name} if args.name else {})
    engine = connect(os.environ)
    try:
        now = datetime.now(timezone.utc)
        rows = [status_row(engine.inspect_container(c["Id"]), now)
                for c in engine.containers(labels)]
    finally:
        engine.close()
    rows.sort(key=lambda r: str(r["name"]))
    print(json.dumps(rows, indent=2) if args.json else format_status(rows))
    return 0
