"""launcher push [--image TAG] DEST: tag the service image as DEST and push it to its registry.

The image is the one ``launcher up`` would run for the same flags (``--gpus``, ``--base-image``,
``--cuda``, ...) unless ``--image`` names another local one. Credentials are the Docker CLI's
(``docker login``: ``$DOCKER_CONFIG`` or ``~/.docker/config.json``, credential helpers too).
One line per layer on stderr; the pushed reference with its digest on stdout, ready for
``launcher render k8s --image``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from launcher._engine import Engine, connect
from launcher._engine_errors import NotFound
from launcher._errors import LauncherError, UsageError
from launcher._help import summary
from launcher._options import add_build_options, plan_options_from_args, run_defaults
from launcher._plan import make_plan, report_plan
from launcher._push import PushProgress, split_reference
from launcher._remote_probe import probe_for
from service.nvml import load_nvml

__all__ = ["add_parser", "run", "source_image"]

_DEST_HINT = ("name the registry and repository, e.g. launcher push "
              "registry.example.com/team/predictor:1.0 (127.0.0.1:5000/predictor for a local one)")


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "push", help="tag the service image and push it to a registry",
        description=summary(__doc__))
    parser.add_argument("dest", metavar="DEST",
                        help="[REGISTRY/]REPOSITORY[:TAG] to push to (TAG: latest)")
    parser.add_argument("--image", metavar="TAG",
                        help="the local image to push (default: the one launcher up would run "
                             "for these flags)")
    parser.add_argument("--gpus", action="append", default=[], metavar="REQUEST",
                        help="as launcher up --gpus: push the GPU image up would run")
    parser.add_argument("-l", "--label", action="append", default=[], metavar="KEY=VALUE",
                        help="as launcher up --label: the labels are part of the image's "
                             "content-hash tag, so push the one up made with them")
    add_build_options(parser)
    parser.set_defaults(func=run)


def _log(line: str) -> None:
    print(f"launcher: {line}", file=sys.stderr)


def source_image(args: argparse.Namespace, load: Callable[[], Any]) -> str:
    """``--image``, else the tag of the image ``launcher up`` would run for these flags."""
    if args.image:
        return str(args.image)
    up_args = argparse.Namespace(**{**run_defaults(), **vars(args)})
    options = plan_options_from_args(up_args, os.environ, os.getcwd())
    plan = make_plan(options, probe_for(options, os.environ, False, load))
    report_plan(plan)
    return plan.image


def _untag(engine: Engine, dest: str, before: str | None) -> None:
    """Put DEST back as the push found it: gone, or on the image it named (best effort: the
    push's own error is the one to report). An image DEST is the only tag of (pushed by its
    id) keeps it: untagging it would delete the image."""
    try:
        if before is None:
            if len(engine.inspect_image(dest).get("RepoTags") or ()) > 1:
                engine.remove_image(dest)
        elif before != engine.image_id(dest):
            repository, tag = split_reference(dest)
            engine.tag_image(before, repository, tag)
    except LauncherError as exc:
        _log(f"warning: {dest} is left tagged: {exc.message}")


def run(args: argparse.Namespace, load: Callable[[], Any] = load_nvml) -> int:
    try:
        repository, tag = split_reference(args.dest)
    except ValueError as exc:
        raise UsageError(f'invalid argument "{args.dest}" for "DEST": {exc}',
                         hint=_DEST_HINT) from None
    image = source_image(args, load)
    engine = connect(os.environ)
    try:
        image_id = engine.image_id(image)
        if image_id is None:
            raise NotFound(f"image {image} is not on the engine",
                           hint="build it first (launcher build, with --gpu for the GPU image), "
                                "or name a local one with --image")
        dest = f"{repository}:{tag}"
        before = engine.image_id(dest)  # a failed push leaves DEST as it found it
        engine.tag_image(image_id, repository, tag)
        _log(f"pushing {image} ({image_id[7:19]}) as {dest}")
        progress = PushProgress()
        try:
            for event in engine.push(repository, tag):
                for line in progress.feed(event):
                    _log(line)
        except BaseException:
            _untag(engine, dest, before)
            raise
    finally:
        engine.close()
    if progress.digest is None:
        _log(f"pushed {repository}:{tag} (the registry named no digest)")
        print(f"{repository}:{tag}")
        return 0
    _log(f"pushed {repository}:{tag}: {progress.digest}")
    print(f"{repository}:{tag}@{progress.digest}")
    return 0
