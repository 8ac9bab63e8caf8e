"""Every command's ``--help`` reads as a terminal shows it: a description of whole sentences
(never a docstring's first source line, cut mid-sentence) and no markup (reStructuredText's
double backticks, Markdown's single ones)."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from launcher._cli import build_parser
from launcher._help import summary
from tests.conftest import ROOT


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """``parser`` and every sub-parser under it (``render k8s`` too), depth first."""
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                found += _parsers(sub)
    return found


PARSERS = _parsers(build_parser())


@pytest.mark.parametrize("parser", PARSERS, ids=[p.prog for p in PARSERS])
def test_each_commands_help_is_whole_sentences_without_markup(
        parser: argparse.ArgumentParser) -> None:
    assert parser.description, f"{parser.prog} has no description"
    assert parser.description.rstrip().endswith((".", ")")), parser.description
    assert "`" not in parser.format_help()


def test_the_service_help_is_whole_sentences_without_markup() -> None:
    proc = subprocess.run([sys.executable, "-m", "service", "--help"], cwd=ROOT, timeout=60,
                          capture_output=True, text=True, check=True)
    description = proc.stdout.split("\n\n")[1]
    assert description.rstrip().endswith((".", ")")), description
    assert "`" not in proc.stdout


@pytest.mark.parametrize(("doc", "expected"), [
    ("launcher x: does a thing across\ntwo lines.\n\nMore detail.\n",
     "launcher x: does a thing across two lines."),
    ("``launcher y`` runs.", "launcher y runs."),
    (None, None),
], ids=["first-paragraph", "literal-markup", "none"])
def test_summary(doc: str | None, expected: str | None) -> None:
    assert summary(doc) == expected
