"""The one base of the service's errors: what went wrong (``message``) and what to do (``hint``).

``python -m service`` prints them as ``error:`` / ``hint:`` and exits 2; while the model loads
in the background, ``/readyz`` reports them as its reason.
"""

from __future__ import annotations

__all__ = ["ServiceError"]


class ServiceError(Exception):
    """A setting, predictor or device that cannot be used; the message names it and its value."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
