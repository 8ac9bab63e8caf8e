"""PREDICTOR=tests.service.stream_predictor:Ticker: a pure-Python streaming predictor at a pace.

``stream({"id": T, "n": N, "pace": S, "size": B, "fail_at": K})`` yields N chunks ``{"i": i, "pad": ...}``
(``pad``: B bytes of text), sleeping S seconds before each; at chunk K it raises. Each event
(``start``, ``yield i``, ``exit`` at GeneratorExit, ``end``) is appended as ``T event`` to the file TICKER_LOG
names, so a test can see what the generator did. Prompts (``service.Prompt``) stream their
text's words, up to ``max_tokens``. An object predictor: ``predict`` echoes its items, a batch
at a time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

from service import Prompt


class Ticker:
    def __init__(self) -> None:
        self.example = {"inputs": [1]}  # the warm-up's request
        self.log = os.environ.get("TICKER_LOG", "")

    def setup(self, device: str) -> None:
        pass

    def decode(self, payload: Any) -> list[Any]:
        """``{"inputs": [...]}`` is a batch of items; any other object is one item."""
        if isinstance(payload, dict) and "inputs" in payload:
            return list(payload["inputs"])
        return [payload]

    def predict(self, items: list[Any]) -> list[Any]:
        return items

    def stream(self, item: Any) -> Iterator[Any]:
        if isinstance(item, Prompt):
            yield from self._words(item)
            return
        n, pace = int(item.get("n", 3)), float(item.get("pace", 0.0))
        pad = "x" * int(item.get("size", 0))
        fail_at = item.get("fail_at")
        tag = item.get("id", "")
        self._note(tag, "start")
        try:
            for i in range(n):
                time.sleep(pace)
                if i == fail_at:
                    raise RuntimeError(f"ticker failed at chunk {i}")
                self._note(tag, f"yield {i}")
                yield {"i": i, "pad": pad} if pad else {"i": i}
        except GeneratorExit:
            self._note(tag, "exit")
            raise
        self._note(tag, "end")

    def _words(self, prompt: Prompt) -> Iterator[str]:
        """Echo the prompt's words, one chunk each, up to max_tokens (default 16); the first
        word in ``stop`` ends it (not included); the word ``<fail>`` raises, ``<dict>`` yields a
        chunk that is not text."""
        words = prompt.text.split()[:prompt.max_tokens or 16]
        for i, word in enumerate(words):
            if prompt.stop and word in prompt.stop:
                return
            if word == "<fail>":
                raise RuntimeError(f"ticker failed at word {i}")
            if word == "<dict>":
                yield {"not": "text"}
            yield word if i == 0 else " " + word

    def _note(self, tag: str, event: str) -> None:
        if self.log and tag:
            with open(self.log, "a", encoding="utf-8") as f:
                f.write(f"{tag} {event}\n")
