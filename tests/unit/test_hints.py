"""Every ``--flag`` a ``hint:`` names exists, and a concrete value it suggests is one the flag
accepts: the hints are read from the source (``hint=`` arguments, an error's second argument,
``*HINT*`` constants and ``hint`` variables) and checked against the real argparse parsers."""

from __future__ import annotations

import argparse
import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from launcher._cli import build_parser
from launcher._errors import UsageError
from launcher._options import build_options_from_args, plan_options_from_args, run_defaults
from launcher.cmd_render import k8s_options_from_args
from tests.conftest import ROOT

# Another tool's command line inside a hint, up to the end of its clause: its flags are its own.
_FOREIGN = re.compile(r"(?:\b(?:nvidia-ctk|docker|dockerd|pip|systemctl|journalctl)\b|"
                      r"scripts/[a-z-]+)[^,;()']*")
_FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)(?:[ =]([^\s,;)]+))?")
_ERRORS = re.compile(r"(Error|NotFound|Unavailable|Missing|Conflict|InUse|Failed|TooOld|Refused|"
                     r"Fits)$")


def _text(node: ast.expr) -> str:
    """A hint expression as text; what is computed at run time reads ``{}``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(_text(v) if isinstance(v, ast.Constant) else "{}" for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _text(node.left) + _text(node.right)
    if isinstance(node, ast.IfExp):
        return _text(node.body) + " / " + _text(node.orelse)
    return "{}"


def _leaves(node: ast.expr) -> Iterator[str]:
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        for element in node.elts:
            yield from _leaves(element)
    elif isinstance(node, ast.Dict):
        for value in node.values:
            yield from _leaves(value)
    else:
        yield _text(node)


def _callee(node: ast.Call) -> str:
    func = node.func
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")


def hints(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            yield from (_text(k.value) for k in node.keywords if k.arg == "hint")
            if len(node.args) >= 2 and (_ERRORS.search(_callee(node)) or _callee(node) == "cls"):
                yield _text(node.args[1])
        elif isinstance(node, ast.Assign):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            if any("hint" in n.lower() or n == "_RULES" for n in names):
                yield from _leaves(node.value)


HINTS = sorted({(p.name, h) for p in (ROOT / "launcher").glob("*.py") for h in hints(p)
                if "--" in h})


def _parsers() -> dict[str, argparse.ArgumentParser]:
    """Every command's parser by its name, sub-commands too ("render k8s")."""
    found: dict[str, argparse.ArgumentParser] = {}

    def walk(name: str, parser: argparse.ArgumentParser) -> None:
        found[name] = parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, child in action.choices.items():
                    walk(f"{name} {sub}".strip(), child)

    walk("", build_parser())
    return found


def _positionals(parser: argparse.ArgumentParser) -> list[str]:
    """A placeholder for each required positional (push's DEST), so a flag parses alone."""
    return ["x" for a in parser._actions if not a.option_strings and a.required
            and not isinstance(a, argparse._SubParsersAction)]


# Words that continue the sentence after a flag ("--gpus as you need"), not its value.
_PROSE = frozenset({"and", "as", "for", "instead", "is", "or", "sets", "takes", "to", "with"})


def _concrete(value: str | None) -> bool:
    """A value a user could paste as it is (not ``N``, ``X.Y``, ``{}``, ``...`` or prose)."""
    return (bool(value) and value not in _PROSE
            and not re.search(r"[A-Z{}'\"]|\.\.\.|^-", value or ""))


def test_hints_are_found() -> None:
    # The collector sees the kinds of hints there are (a guard against it finding nothing).
    names = {name for name, _ in HINTS}
    assert {"_engine_errors.py", "_options.py", "_plan.py", "_cuda.py", "_up.py"} <= names


@pytest.mark.parametrize(("module", "hint"), HINTS, ids=[f"{m}:{h[:40]}" for m, h in HINTS])
def test_every_flag_a_hint_names_exists(module: str, hint: str) -> None:
    parsers = _parsers()
    for flag, value in _FLAG.findall(_FOREIGN.sub("", hint)):
        owners = {cmd: p for cmd, p in parsers.items() if flag in p._option_string_actions}
        if not owners:
            pytest.fail(f"{module}: the hint {hint!r} names {flag}, which no command has")
        if not _concrete(value):
            continue
        # A flag several commands have (--gpus: up's request, render k8s's count) may mean a
        # different thing to each: the value must be one that some command takes.
        refusals: list[str] = []
        for cmd, parser in owners.items():
            if parser._option_string_actions[flag].nargs == 0:
                refusals = []
                break  # a switch: the next word is prose
            try:
                _check(cmd, parser.parse_args([flag, value, *_positionals(parser)]))
            except UsageError as exc:
                refusals.append(f"launcher {cmd} refuses: {exc.message}")
            else:
                refusals = []
                break
        if refusals:
            pytest.fail(f"{module}: the hint {hint!r} suggests {flag} {value}, which "
                        + "; ".join(refusals))


def _check(cmd: str, args: argparse.Namespace) -> None:
    """The values up, build, push and render check after argparse."""
    if cmd == "up":
        plan_options_from_args(args, {}, "/")
    elif cmd == "push":
        plan_options_from_args(argparse.Namespace(**{**run_defaults(), **vars(args)}), {}, "/")
    elif cmd == "build":
        build_options_from_args(args)
    elif cmd == "render k8s":
        k8s_options_from_args(args)


@pytest.mark.parametrize(("hint", "message"), [
    ("or run with --gpus none", "suggests --gpus none, which launcher up refuses"),
    ("choose another --port", "names --port, which no command has"),
    ("or drop --runtime", "names --runtime, which no command has"),
], ids=["bad-value", "no-such-flag", "no-such-flag-2"])
def test_the_check_catches_the_old_hints(hint: str, message: str) -> None:
    with pytest.raises(pytest.fail.Exception, match=re.escape(message)):
        test_every_flag_a_hint_names_exists("x.py", hint)
