"""What a command's ``--help`` says about it: its module docstring's first paragraph."""

from __future__ import annotations

__all__ = ["summary"]


def summary(doc: str | None) -> str | None:
    """``doc``'s first paragraph as one line for ``--help`` (argparse rewraps it): whole
    sentences, never its first source line alone, and without reStructuredText's ``literal``
    markup, which a terminal shows as backticks."""
    if not doc:
        return None
    return " ".join(doc.strip().split("\n\n", 1)[0].split()).replace("``", "")
