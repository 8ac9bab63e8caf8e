"""A streaming text generator: a tiny byte-level GPT-2 (``transformers``), trained by train.py
on corpus.txt and shipped in model/ (0.3 MB), generating token by token with its KV cache.

Serve it:  launcher up --predictor predict:Generator --code examples/generate \\
               --requirements examples/generate/requirements.txt
Then:      curl -N localhost:PORT/v1/completions -H 'Content-Type: application/json' \\
               -d '{"model": "generate", "prompt": "Once upon a time", "stream": true}'

``stream(prompt)`` yields the decoded text as it comes (greedy unless ``temperature`` > 0; up
to ``max_tokens``, default 32; cut before the first ``stop`` string). The service calls it for
``/v1/completions``, ``/v2/models/{name}/generate_stream`` and ``/predict`` with
``Accept: text/event-stream``. The tokenizer is the bytes of UTF-8 (one token a byte, 256 is
end-of-text), so nothing is downloaded: no hub, no tokenizer files.
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from transformers import GPT2LMHeadModel
from transformers.utils import logging as transformers_logging

from service import InputError, Prompt

# At import, in one thread: transformers' lazy imports are not safe from several replicas'
# setup threads at once (one of them failed with "cannot import name 'GPT2LMHeadModel'").
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local directory: never the hub
transformers_logging.disable_progress_bar()  # "Loading weights" bars in the log

MODEL_DIR = Path(__file__).resolve().parent / "model"
EOS = 256  # end-of-text; tokens 0-255 are bytes
DEFAULT_MAX_TOKENS = 32


class Generator:
    """An object predictor whose items are prompts and whose chunks are text."""

    def __init__(self) -> None:
        self.example = {"prompt": "Once upon a time", "max_tokens": 8}  # warm-up, docs, curl

    def setup(self, device: str) -> None:
        self.device = device
        # from_pretrained is not safe from two threads at once; the service sets its replicas
        # up one at a time (service/_replicas.py), so this needs no lock of its own
        self.model = GPT2LMHeadModel.from_pretrained(MODEL_DIR, dtype=torch.float32)
        self.model.to(device).eval()
        self.context = int(self.model.config.n_positions)
        self.info = {"model": "byte-gpt2", "device": device}

    def decode(self, payload: Any) -> list[Prompt]:
        """``/predict``: ``{"prompt": "...", "max_tokens": N, "temperature": T}``."""
        if not isinstance(payload, dict) or not isinstance(payload.get("prompt"), str):
            raise InputError('send {"prompt": "some text"} (and max_tokens, temperature)')
        max_tokens, temperature = payload.get("max_tokens"), payload.get("temperature")
        if max_tokens is not None and (type(max_tokens) is not int or max_tokens < 1):
            raise InputError(f"max_tokens must be a whole number of at least 1, got "
                             f"{max_tokens!r}")
        if temperature is not None and (type(temperature) not in (int, float)
                                        or temperature < 0):
            raise InputError(f"temperature must be a number of at least 0, got {temperature!r}")
        return [Prompt(payload["prompt"], max_tokens,
                       None if temperature is None else float(temperature))]

    def predict(self, items: list[Prompt]) -> list[str]:
        """A whole completion per prompt (``/predict`` without streaming)."""
        return ["".join(self.stream(item)) for item in items]

    def cost(self, item: Prompt) -> int:
        """Tokens in the prompt: its UTF-8 bytes."""
        return len(item.text.encode())

    def stream(self, item: Prompt) -> Iterator[str]:
        max_tokens = min(item.max_tokens or DEFAULT_MAX_TOKENS, self.context - 1)
        tokens = list(item.text.encode())[-(self.context - max_tokens):] or [EOS]
        ids = torch.tensor([tokens], device=self.device)
        text = codecs.getincrementaldecoder("utf-8")("replace")
        stops = item.stop or ()
        pending = ""  # text held back while it may be the start of a stop string
        past = None
        for _ in range(max_tokens):
            # per step, never across a yield: the replica's thread runs other work between
            with torch.inference_mode():
                out = self.model(input_ids=ids, cache=past, use_cache=True)
                past = out.cache
                logits = out.logits[0, -1]
                if item.temperature:
                    probs = torch.softmax(logits / item.temperature, dim=-1)
                    token = int(torch.multinomial(probs, 1))
                else:
                    token = int(logits.argmax())
            if token == EOS:
                break
            ids = torch.tensor([[token]], device=self.device)
            pending += text.decode(bytes([token]))
            cut = min((pending.find(s) for s in stops if s in pending), default=-1)
            if cut >= 0:
                if pending[:cut]:
                    yield pending[:cut]
                return
            keep = _held(pending, stops)
            if len(pending) > keep:
                yield pending[:len(pending) - keep]
                pending = pending[len(pending) - keep:]
        if pending:
            yield pending


def _held(text: str, stops: tuple[str, ...]) -> int:
    """How many characters at the end of ``text`` may begin a stop string."""
    for n in range(min(len(text), max((len(s) for s in stops), default=0)), 0, -1):
        if any(s.startswith(text[-n:]) for s in stops):
            return n
    return 0
