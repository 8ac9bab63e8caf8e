"""The bases of the service's errors: ``MessageError`` carries what went wrong (``message``);
``ServiceError``, for settings, predictor and device errors, also what to do (``hint``).

``python -m service`` prints a ``ServiceError`` as ``error:`` / ``hint:`` and exits 2; while the
model loads in the background, ``/readyz`` reports it as its reason.
"""

from __future__ import annotations

__all__ = ["MessageError", "ServiceError"]


class MessageError(Exception):
    """An error whose ``message`` is the text callers show (an HTTP answer, /readyz, a log)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ServiceError(MessageError):
    """A setting, predictor or device that cannot be used; the message names it and its value."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint
