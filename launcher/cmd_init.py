"""``launcher init DIR [--kind tensor|object]``: write a starter project (predict.py,
requirements.txt, README.md) that ``launcher up --predictor predict:Predictor --code DIR`` serves
as it is: a tensor predictor (float rows) or an object predictor (texts, images, any JSON)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from launcher._errors import EXIT_OK
from launcher._starter import KINDS, up_command, write_starter

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "init", help="write a starter predictor project into DIR",
        description="Write a starter project into DIR (made when missing): predict.py, a "
                    "predictor class with setup/predict and the optional hooks; "
                    "requirements.txt; README.md with the launcher up line that serves it. "
                    "Files already there are never replaced.")
    parser.add_argument("directory", metavar="DIR", type=Path, help="where to write it")
    parser.add_argument("--kind", choices=KINDS, default="tensor",
                        help="tensor: a predictor of float rows of one width (the default); "
                             "object: a predictor of any items (texts, images, JSON) with "
                             "decode, cost and an example request")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    written = write_starter(args.directory, args.kind)
    for path in written:
        print(path)
    print(f"launcher: wrote a starter predictor into {args.directory}; serve it with:\n"
          f"  {up_command(str(args.directory))}", file=sys.stderr)
    return EXIT_OK
