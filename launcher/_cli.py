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
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any, NoReturn, TextIO

from launcher import __version__
from launcher._errors import EXIT_FAILURE, EXIT_INTERRUPTED, LauncherError, UsageError
from launcher._project_file import (
    FILE_NAME,
    FlagSpec,
    Setting,
    command_flags,
    flag_specs,
    merged_args,
    project_file_error,
    read_project_file,
)
from service._deps import missing_dependency

__all__ = ["build_parser", "main"]

# Command modules, in the order `launcher --help` lists them.
_COMMAND_MODULES: tuple[str, ...] = (
    "cmd_probe", "cmd_init", "cmd_build", "cmd_up", "cmd_status", "cmd_logs", "cmd_down",
    "cmd_push", "cmd_render", "cmd_version")
# The commands that read ./launcher.toml (or launcher -f FILE): the file says the project.
FILE_COMMANDS = ("up", "build", "push", "render", "down", "status", "logs")


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
    parser.add_argument("--version", action="version", version=f"launcher {__version__}")
    parser.add_argument("-f", "--file", metavar="FILE",
                        help=f"read FILE instead of ./{FILE_NAME} (the project's launcher up "
                             f"flags; read by {', '.join(FILE_COMMANDS)})")
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


def _split_file(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """``launcher -f FILE COMMAND ...`` → (FILE, ``COMMAND ...``); (None, argv) without -f."""
    if argv and argv[0] in ("-f", "--file"):
        if len(argv) < 2:
            raise UsageError(f"argument {argv[0]}: expected one argument",
                             hint="launcher -f FILE up ...")
        return argv[1], list(argv[2:])
    if argv and argv[0].startswith("--file="):
        return argv[0].partition("=")[2], list(argv[1:])
    return None, list(argv)


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """``parser`` and every sub-parser under it."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def _command_parser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    chosen: argparse.ArgumentParser = sub.choices[command]
    return chosen


def _given(argv: Sequence[str], command: str) -> dict[str, Any]:
    """What ``argv`` itself gives, by destination: the parse with every default left out."""
    parser = build_parser(command)
    dests = set()
    for p in _parsers(parser):
        p._defaults.clear()
        for action in p._actions:
            action.default = argparse.SUPPRESS
            dests.add(action.dest)
    return {k: v for k, v in vars(parser.parse_args(argv)).items() if k in dests}


def _parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[Setting]]:
    """The command line, with ./launcher.toml (or -f FILE) filled in where a file command's
    flags were not given; the file's settings that were applied come back too."""
    named, argv = _split_file(argv)
    command = _command(argv)
    if command not in FILE_COMMANDS:
        if named is not None:
            raise UsageError(f"launcher -f {named}: launcher {command or 'COMMAND'} reads no "
                             f"{FILE_NAME}", hint=f"-f goes with {', '.join(FILE_COMMANDS)}")
        return build_parser(command).parse_args(argv), []
    assert command is not None
    given = _given(argv, command)
    parser = build_parser(command)
    command_parsers = list(_parsers(_command_parser(parser, command)))
    file = Path(named).absolute() if named is not None else Path.cwd() / FILE_NAME
    specs: dict[str, FlagSpec] = {}
    settings: list[Setting] = []
    if named is not None or file.is_file():
        up = parser if command == "up" else build_parser("up")
        specs = flag_specs(_command_parser(up, "up"))
        settings = read_project_file(file, specs)
    words = merged_args(settings, specs, given, command_flags(command_parsers))
    args = parser.parse_args([*argv, *words])
    applied = [s for s in settings if set(s.args) & set(words)]
    args.settings = _sources(applied, given, command_parsers)
    return args, applied


def _sources(applied: Sequence[Setting], given: Mapping[str, Any],
             parsers: Sequence[argparse.ArgumentParser]) -> dict[str, str]:
    """Where each setting came from, for ``up --dry-run --json``: the file's path, ``flag``, or
    both (an ``env`` merged from the two)."""
    sources = {s.key: str(s.file) for s in applied}
    for key, spec in ((k, v) for p in parsers for k, v in flag_specs(p).items()):
        if spec.dest in given:
            sources[key] = f"{sources[key]}, flag" if key in sources else "flag"
    return dict(sorted(sources.items()))


def _from_file(error: UsageError, applied: Sequence[Setting]) -> UsageError:
    """``error``, naming the launcher.toml key that gave the value it is about."""
    word = f"{error.flag}={error.value}"
    setting = next((s for s in applied if word in s.args), None)
    if setting is None:
        return error
    return project_file_error(setting.file, setting.key, setting.value, error.message,
                              error.hint)


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
            args, applied = _parse(argv)
        finally:
            if collecting:
                gc.enable()
        run = functools.partial(args.func, load=load) if load is not None else args.func
        try:
            return int(run(args))
        except UsageError as exc:
            raise _from_file(exc, applied) from None
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
