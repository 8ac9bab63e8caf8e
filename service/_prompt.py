"""``service.Prompt``: the item a text-generation request becomes.

``/v1/completions`` and ``/v2/models/{name}/generate[_stream]`` build it from their own fields
(the service does not call ``decode`` for them), so one ``stream(self, item)`` serves every
protocol; a predictor's ``decode`` may return prompts for ``/predict`` too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from service._inputs import BadRequest, json_kind

__all__ = ["Prompt", "prompt_of"]


@dataclass(frozen=True)
class Prompt:
    """The text to continue and how; a field the request left out is ``None`` (the model's
    default applies)."""

    text: str
    max_tokens: int | None = None
    temperature: float | None = None
    stop: tuple[str, ...] | None = None


def prompt_of(text: str, fields: Mapping[str, Any], max_temperature: float) -> Prompt:
    """A prompt of ``text`` with a request's ``max_tokens``, ``temperature`` (0 to
    ``max_temperature``) and ``stop`` (a string or a list of them); BadRequest (400) names the
    field that does not fit."""
    max_tokens = fields.get("max_tokens")
    if max_tokens is not None and (type(max_tokens) is not int or max_tokens < 1):
        raise BadRequest(400, f"'max_tokens' must be a whole number of at least 1, got "
                              f"{orjson.dumps(max_tokens).decode()}")
    temperature = fields.get("temperature")
    if temperature is not None and (type(temperature) not in (int, float)
                                    or not 0 <= temperature <= max_temperature):
        raise BadRequest(400, f"'temperature' must be a number from 0 to {max_temperature:g}, "
                              f"got {orjson.dumps(temperature).decode()}")
    stop = fields.get("stop")
    stops = [stop] if type(stop) is str else stop
    if stops is not None and (type(stops) is not list or not all(type(s) is str for s in stops)):
        raise BadRequest(400, f"'stop' must be a string or a list of strings, got "
                              f"{json_kind(stop)}")
    return Prompt(text, max_tokens, None if temperature is None else float(temperature),
                  tuple(stops) if stops else None)
