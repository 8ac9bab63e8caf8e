"""PREDICTOR=tests.service.slow_predictor:SlowEcho: each forward pass takes SLOW_SECONDS."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from service._predictor import Batch


class SlowEcho:
    def __init__(self) -> None:
        self.input_width: int | None = 2
        self.seconds = float(os.environ.get("SLOW_SECONDS", "0.5"))

    def setup(self, device: str) -> None:
        pass

    def predict(self, batch: Batch) -> Mapping[str, Sequence[Any]]:
        time.sleep(self.seconds)
        return {"predictions": [row[0] for row in batch.tolist()]}
