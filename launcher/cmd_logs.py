"""launcher logs [--name N] [-f] [--tail N]: the service container's output, on stdout."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from launcher._engine import connect
from launcher._engine_errors import NotFound
from launcher._help import summary
from launcher._options import DEFAULT_NAME

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("logs", help="show the service container's log",
                                   description=summary(__doc__))
    parser.add_argument("--name", default=DEFAULT_NAME, help=f"container name ({DEFAULT_NAME})")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    parser.add_argument("-n", "--tail", type=int, metavar="N", help="only the last N lines")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    engine = connect()
    try:
        if engine.find_container(args.name) is None:
            raise NotFound(f"no container {args.name}",
                           hint="list the containers launcher manages: launcher status")
        for chunk in engine.stream_logs(args.name, tail=args.tail, follow=args.follow):
            sys.stdout.write(chunk)
            sys.stdout.flush()
    finally:
        engine.close()
    return 0
