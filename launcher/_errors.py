"""Typed failures of the launcher: each carries one line of message and a ``hint:`` line."""

from __future__ import annotations

__all__ = [
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "LauncherError",
    "UsageError",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT, as shells report it


class LauncherError(Exception):
    """A failure the user can act on: exit 1, one line, a hint."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(LauncherError):
    """A bad flag or value: exit 2, the offending value echoed in the message. ``flag`` and
    ``value`` name them where one flag's value is at fault (a launcher.toml key that gave it
    is then named too)."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, hint: str | None = None, *, flag: str | None = None,
                 value: str | None = None) -> None:
        super().__init__(message, hint)
        self.flag = flag
        self.value = value
