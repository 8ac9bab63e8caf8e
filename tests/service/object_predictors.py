"""Object predictors for the tests (``PREDICTOR=tests.service.object_predictors:Name``): pure
Python, each answering with what its batch looked like, so a test against a real process can
see how requests were batched."""

from __future__ import annotations

import hashlib
import itertools
import struct
import threading
import time
from typing import Any, ClassVar

import numpy as np

from service import InputError

PNG = b"\x89PNG\r\n\x1a\n"
DIMENSIONS = 8


def vector(text: str) -> list[float]:
    """The test's deterministic embedding of a text: float32 values in [0, 1)."""
    digest = hashlib.sha256(text.encode()).digest()
    return [float(np.float32(b / 256)) for b in digest[:DIMENSIONS]]


class Records:
    """What every test predictor does with a batch: items that say ``sleep:S`` hold it for S
    seconds (a queue builds up behind it), ``bad`` is the client's mistake, ``crash`` the
    model's; each output carries the batch's number, size and costs."""

    example: ClassVar[Any] = {"inputs": ["a short text"]}

    def __init__(self) -> None:
        self.batches = itertools.count()
        self.lock = threading.Lock()

    def setup(self, device: str) -> None:
        self.device = device

    def decode(self, payload: Any) -> list[Any]:
        items = payload.get("inputs") if type(payload) is dict else None
        if type(items) is not list:
            raise InputError("send {\"inputs\": [...]}")
        return items

    def cost(self, item: Any) -> int:
        return len(item) if isinstance(item, str) else 1

    def predict(self, items: list[Any]) -> list[Any]:
        number = next(self.batches)
        for item in items:
            if isinstance(item, str) and item.startswith("sleep:"):
                time.sleep(float(item[6:]))
            if item == "bad":
                raise InputError("the item 'bad' is refused")
            if item == "crash":
                raise RuntimeError("the model crashed")
        costs = [self.cost(item) for item in items]
        return [{"item": item, "batch": number, "size": len(items), "costs": costs}
                for item in items]


class Texts(Records):
    """Text in, a float vector out (a numpy array: converted by the service); cost: words."""

    info: ClassVar[dict[str, str]] = {"model": "texts"}

    def cost(self, item: Any) -> int:
        return max(1, len(str(item).split()))

    def predict(self, items: list[Any]) -> Any:
        for item in items:
            if not isinstance(item, str):
                raise InputError(f"items must be text, got {type(item).__name__}")
            if item == "bad":
                raise InputError("the item 'bad' is refused")
        return np.array([vector(item) for item in items], dtype=np.float32)

    def encode(self, outputs: list[Any]) -> Any:
        return {"embeddings": outputs}


class Images:
    """A PNG's bytes in (the raw body), its width and height out; no example."""

    def setup(self, device: str) -> None:
        pass

    def decode(self, payload: Any) -> list[Any]:
        if not isinstance(payload, bytes):
            raise InputError("send the image's bytes (Content-Type: image/png)")
        if not payload.startswith(PNG) or len(payload) < 24:
            raise InputError(f"not a PNG image: it starts with {payload[:8]!r}")
        return [payload]

    def predict(self, items: list[bytes]) -> list[Any]:
        return [dict(zip(("width", "height"), struct.unpack(">II", image[16:24]), strict=True))
                | {"bytes": len(image)} for image in items]


def png(width: int, height: int, extra: int = 100) -> bytes:
    """A PNG-like blob: the signature, an IHDR chunk with the size, then noise."""
    ihdr = struct.pack(">II", width, height) + b"\x08\x02\x00\x00\x00"
    return PNG + struct.pack(">I", 13) + b"IHDR" + ihdr + b"\x00" * 4 + bytes(range(256))[:extra]
