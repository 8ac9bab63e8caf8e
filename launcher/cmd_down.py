"""launcher down [--name N] [--volumes]: stop the service (SIGTERM, then SIGKILL after the grace
period) and remove its container; its named volumes stay unless --volumes."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from launcher._engine import connect
from launcher._errors import LauncherError
from launcher._help import summary
from launcher._options import DEFAULT_NAME, STOP_GRACE
from launcher._plan import LABEL_MANAGED, LABEL_NAME

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("down", help="stop and remove the service container",
                                   description=summary(__doc__))
    parser.add_argument("--name", default=DEFAULT_NAME, help=f"container name ({DEFAULT_NAME})")
    parser.add_argument("--volumes", action="store_true",
                        help="also remove the volumes launcher created for it (models, data)")
    parser.add_argument("-t", "--time", type=int, default=STOP_GRACE, metavar="SECONDS",
                        help=f"seconds between SIGTERM and SIGKILL ({STOP_GRACE})")
    parser.set_defaults(func=run)


def _log(line: str) -> None:
    print(f"launcher: {line}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    engine = connect()
    try:
        existing = engine.find_container(args.name)
        if existing is None:
            _log(f"no container {args.name}")
        else:
            labels = (existing.get("Config") or {}).get("Labels") or {}
            if labels.get(LABEL_MANAGED) != "true":
                raise LauncherError(f"container {args.name} was not created by launcher; "
                                    "left alone", hint=f"remove it yourself: docker rm -f {args.name}")
            engine.stop(existing["Id"], timeout=args.time)
            engine.remove_container(existing["Id"])
            _log(f"stopped and removed {args.name}")
        volumes = engine.volumes({LABEL_MANAGED: "true", LABEL_NAME: args.name})
        if args.volumes:
            for volume in volumes:
                engine.remove_volume(volume)
                _log(f"removed volume {volume}")
        elif volumes:
            _log(f"kept volumes {', '.join(volumes)} (remove them with --volumes)")
    finally:
        engine.close()
    return 0
