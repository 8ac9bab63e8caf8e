"""``launcher COMMAND ...``: argument parsing, dispatch and exit codes.

Each command lives in its own module exposing ``add_parser(subparsers)`` (which sets
``func=run`` on its parser) and ``run(args) -> int`` (``run(args, load)`` for the commands that
read GPUs). Data goes to stdout, progress and diagnostics to stderr; failures print
``launcher: error: ...`` and a ``hint:`` line, never a traceback.
"""

from __future__ import annotations

import argparse
import atexit
import functools
import gc
import importlib
import sys
from collections.abc import Callable, Sequence
from contextlib import redirect_stderr, redirect_stdout
from typing import Any, NoReturn, TextIO

from launcher._errors import EXIT_FAILURE, EXIT_INTERRUPTED, LauncherError, UsageError
from service._deps import missing_dependency

__all__ = ["build_parser", "main"]

# Command modules, in the order `launcher --help` lists them.
_COMMAND_MODULES: tuple[str, ...] = (
    "cmd_probe", "cmd_init", "cmd_build", "cmd_up", "cmd_status", "cmd_logs", "cmd_down",
    "cmd_push", "cmd_render")


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError (exit 2 with a hint) instead of printing and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, hint=f"see '{self.prog} --help'")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with ``command`` (a command's name), only that command's sub-parser,
    so a run imports its own command module and not the others' (``launcher up`` never loads
    what ``render`` or ``push`` need)."""
    parser = _Parser(prog="launcher", description=(
        "Run the inference service in a container on this host's GPUs: probe them (NVML), pick "
        "the CUDA image the driver runs, build it with layer caching, start it like "
        "docker run --gpus. Exit codes: 0 ok, 1 failure, 2 usage, 130 interrupted (Ctrl-C)."))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    modules = [f"cmd_{command}"] if f"cmd_{command}" in _COMMAND_MODULES else _COMMAND_MODULES
    for name in modules:
        importlib.import_module(f"launcher.{name}").add_parser(sub)
    return parser


def _command(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names, where its first word is one (else None: the whole parser
    answers, e.g. ``--help`` or a typo listed against every command)."""
    return argv[0] if argv and f"cmd_{argv[0]}" in _COMMAND_MODULES else None


def report(error: LauncherError) -> None:
    print(f"launcher: error: {error.message}", file=sys.stderr)
    if error.hint:
        print(f"hint: {error.hint}", file=sys.stderr)


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None,
         stderr: TextIO | None = None, load: Callable[[], Any] | None = None) -> int:
    """``launcher ARGV`` (default: this process's arguments) → its exit code. ``stdout`` gets
    the data and ``stderr`` the progress and errors (default: this process's streams);
    ``load`` replaces the NVML loader of the commands that read GPUs (probe, build, up), as
    tests do with a fake NVML."""
    if argv is None:  # this process's own run: it ends when main returns
        # Python's last collections at exit walk every object the imports made (the Docker SDK
        # and requests: 40-90 ms here); frozen, they are skipped and the OS takes the memory.
        atexit.register(gc.freeze)
    with redirect_stdout(stdout or sys.stdout), redirect_stderr(stderr or sys.stderr):
        return _main(argv, load)


def _main(argv: Sequence[str] | None, load: Callable[[], Any] | None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        # The imports (the Docker SDK and requests among them) make tens of thousands of
        # objects that live until exit: collecting them while they are made is wasted work
        # (~10 ms of every command here).
        collecting = gc.isenabled()
        gc.disable()
        try:
            args = build_parser(_command(argv)).parse_args(argv)
        finally:
            if collecting:
                gc.enable()
        run = functools.partial(args.func, load=load) if load is not None else args.func
        return int(run(args))
    except LauncherError as exc:
        report(exc)
        return exc.exit_code
    except ModuleNotFoundError as exc:  # e.g. installed with --no-deps, no Docker SDK
        missing = missing_dependency(exc, "launcher")
        if missing is None:
            raise
        report(LauncherError(missing.message, hint=missing.hint))
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("launcher: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_FAILURE
    except SystemExit as exc:  # argparse after --help
        return exc.code if isinstance(exc.code, int) else EXIT_FAILURE
