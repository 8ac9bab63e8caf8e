"""``launcher.toml``, pure: a project's ``launcher up`` flags in a file, turned into the same
command-line words the parser already checks, so every flag's own check applies to them.

Keys are ``launcher up``'s long flag names without the dashes: a string (or number) for a flag
that takes one value, a list for a repeatable one (a string is one item), ``true``/``false`` for
a switch, and ``env`` and ``label`` also as tables. Paths are relative to the file. A flag on the
command line replaces the file's key; ``env`` and ``label`` are merged by KEY, the command line's
winning.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10: the same parser, from PyPI
    import tomli as tomllib

from launcher._errors import UsageError
from launcher._flags import parse_timeout, volume_source

__all__ = [
    "FILE_NAME",
    "NOT_IN_FILE",
    "FlagSpec",
    "Setting",
    "command_flags",
    "flag_specs",
    "merged_args",
    "parse_project_file",
    "project_file_error",
    "read_project_file",
    "show_value",
    "table_key",
]

FILE_NAME = "launcher.toml"
# `launcher up` flags that say how to run this once, not what the project is.
NOT_IN_FILE = frozenset({"help", "dry-run", "json"})
# The keys whose values are paths (relative to the file); volume's host side is resolved too.
_PATHS = frozenset({"code", "requirements", "model", "env-file", "wheelhouse", "probe-file"})
_TABLES = frozenset({"env", "label"})  # KEY=VALUE lists, also written as TOML tables
_HINT = ("keys are launcher up's long flags without the dashes, e.g. memory = \"8g\", "
         "publish = [\"127.0.0.1:8080:8000\"]; see 'launcher up --help'")

Kind = Literal["one", "many", "switch"]


@dataclass(frozen=True)
class FlagSpec:
    """A key of the file: the flag it stands for and how many values that flag takes."""

    option: str  # "--memory"
    kind: Kind
    dest: str  # the argparse destination ("memory", "env_file")
    action: argparse.Action | None = None  # its type/choices check the file's value


@dataclass(frozen=True)
class Setting:
    """One key of the file: its value as written, and as command-line words."""

    key: str
    value: Any
    args: tuple[str, ...]
    file: Path


def _kind(action: argparse.Action) -> Kind:
    if action.nargs == 0:
        return "switch"
    return "many" if isinstance(action, argparse._AppendAction) else "one"


def flag_specs(parser: argparse.ArgumentParser) -> dict[str, FlagSpec]:
    """The keys a file may hold: ``parser``'s (``launcher up``'s) long flags, less
    :data:`NOT_IN_FILE`."""
    specs: dict[str, FlagSpec] = {}
    for action in parser._actions:
        longs = [o for o in action.option_strings if o.startswith("--")]
        if longs and longs[0][2:] not in NOT_IN_FILE:
            specs[longs[0][2:]] = FlagSpec(longs[0], _kind(action), action.dest, action)
    return specs


def command_flags(parsers: Iterable[argparse.ArgumentParser]) -> dict[str, Kind]:
    """The long flags of a command (its parser and its sub-parsers), with their kinds: a file's
    key applies to the command only where it has that flag, of the same kind."""
    return {o: _kind(a) for p in parsers for a in p._actions for o in a.option_strings
            if o.startswith("--")}


def show_value(value: Any) -> str:
    """A value as TOML writes it (near enough: JSON's strings, lists and tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, default=str)


def project_file_error(file: Path, key: str, value: Any, why: str, hint: str | None
                       ) -> UsageError:
    """The one shape of a file's error: the file, the key and its value, then why."""
    return UsageError(f"{file}: {key} = {show_value(value)}: {why}", hint=hint)


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def _type_error(file: Path, key: str, value: Any, spec: FlagSpec) -> UsageError:
    if spec.kind == "switch":
        why = f"expected true or false ({spec.option} is a switch)"
        example = "true"
    elif spec.kind == "one":
        why = f"expected a string ({spec.option} takes one value)"
        example = '"VALUE"'
    elif key in _TABLES:
        why = f"expected a list of strings or a table ({spec.option} may be repeated)"
        example = '["KEY=VALUE"], or a table: [' + key + "] KEY = \"VALUE\""
    else:
        why = f"expected a list of strings ({spec.option} may be repeated)"
        example = '["VALUE", ...]'
    return project_file_error(file, key, value, why, f"write it as {key} = {example}")


def _relative(value: str, key: str, base: Path) -> str:
    if key in _PATHS:
        return os.path.normpath(os.path.join(base, os.path.expanduser(value)))
    if key == "volume":
        return volume_source(value, str(base))
    return value


# Flags whose value the command checks after argparse (to echo it with a hint, exit 2): the
# file's value gets the same check here, before the engine is touched.
_CHECKED_LATER = {"--timeout": parse_timeout}


def _check(file: Path, key: str, item: str, spec: FlagSpec) -> None:
    """The flag's own check (its argparse type and choices, or the command's own parse) on one of
    the file's values."""
    action = spec.action
    if action is None:
        return
    check = _CHECKED_LATER.get(spec.option, action.type)
    try:
        converted = check(item) if callable(check) else item
    except (TypeError, ValueError, argparse.ArgumentTypeError) as exc:
        raise project_file_error(file, key, item, f"invalid value for {spec.option}: {exc}",
                                 f"see 'launcher up --help' for {spec.option}") from None
    if action.choices is not None and converted not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise project_file_error(file, key, item, f"{spec.option} takes one of {choices}",
                                 f"pick one of {choices}")


def _setting(file: Path, key: str, value: Any, spec: FlagSpec) -> Setting:
    base = file.parent
    if spec.kind == "switch":
        if not isinstance(value, bool):
            raise _type_error(file, key, value, spec)
        return Setting(key, value, (spec.option,) if value else (), file)
    if spec.kind == "one":
        if not _scalar(value):
            raise _type_error(file, key, value, spec)
        item = _relative(str(value), key, base)
        _check(file, key, item, spec)
        return Setting(key, value, (f"{spec.option}={item}",), file)
    if key in _TABLES and isinstance(value, dict):
        if not all(_scalar(v) for v in value.values()):
            raise _type_error(file, key, value, spec)
        items = [f"{k}={v}" for k, v in value.items()]
    elif _scalar(value):
        items = [str(value)]
    elif isinstance(value, list) and all(_scalar(v) for v in value):
        items = [str(v) for v in value]
    else:
        raise _type_error(file, key, value, spec)
    items = [_relative(item, key, base) for item in items]
    for item in items:
        _check(file, key, item, spec)
    return Setting(key, value, tuple(f"{spec.option}={item}" for item in items), file)


def parse_project_file(text: str, file: Path, specs: Mapping[str, FlagSpec]) -> list[Setting]:
    """The file's settings, in its order; a :class:`UsageError` naming the file, the key and
    its value for anything its flag would refuse before parsing (not TOML, an unknown key, a
    wrong type, a value its flag's type or choices refuse)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{file}: not TOML: {exc}", hint=_HINT) from None
    settings = []
    for key, value in data.items():
        spec = specs.get(key)
        if spec is None:
            close = difflib.get_close_matches(key, list(specs), n=1)
            hint = f"did you mean {close[0]}? " + _HINT if close else _HINT
            raise project_file_error(file, key, value, "unknown key", hint)
        settings.append(_setting(file, key, value, spec))
    return settings


def read_project_file(file: Path, specs: Mapping[str, FlagSpec]) -> list[Setting]:
    """:func:`parse_project_file` of ``file`` (absolute); an unreadable file is a usage error."""
    try:
        text = file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or str(exc)
        raise UsageError(f"{file}: {why}",
                         hint="launcher -f FILE names a launcher.toml; launcher init DIR "
                              "writes one") from None
    return parse_project_file(text, file, specs)


def table_key(word: str) -> str:
    """``--env=KEY=VALUE`` → ``KEY``: what an env or label item sets."""
    return word.partition("=")[2].partition("=")[0]


def merged_args(settings: Iterable[Setting], specs: Mapping[str, FlagSpec],
                given: Mapping[str, Any], takes: Mapping[str, Kind]) -> list[str]:
    """The words the file adds to a command line that gave ``given`` (dest → value) to a
    command whose flags are ``takes``: a key whose flag the command line gave is left out
    (``env``/``label``: only the KEYs it set), as is a key the command has no such flag for."""
    words: list[str] = []
    for s in settings:
        spec = specs[s.key]
        if takes.get(spec.option) != spec.kind:
            continue
        if spec.dest not in given:
            words += s.args
        elif s.key in _TABLES:
            named = {str(v).partition("=")[0] for v in given[spec.dest]}
            words += [w for w in s.args if table_key(w) not in named]
    return words
