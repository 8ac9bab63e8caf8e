"""``service.Prompt``: the item a text-generation request becomes.

``/v1/completions`` and ``/v2/models/{name}/generate[_stream]`` build it from their own fields
(the service does not call ``decode`` for them), so one ``stream(self, item)`` serves every
protocol; a predictor's ``decode`` may return prompts for ``/predict`` too.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Prompt"]


@dataclass(frozen=True)
class Prompt:
    """The text to continue and how; a field the request left out is ``None`` (the model's
    default applies)."""

    text: str
    max_tokens: int | None = None
    temperature: float | None = None
    stop: tuple[str, ...] | None = None
