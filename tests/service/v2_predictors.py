"""PREDICTOR=tests.service.v2_predictors:Echo: width 3, a column of every tensor datatype.

``echo`` is the row as the model received it (float32 values, as Python floats: FP64), so a test
sees exactly what each input datatype became; the other columns are one datatype each, four read
from the values (BOOL, INT64, FP64, BYTES) and the rest declared in ``output_datatypes``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from service._predictor import Batch

DECLARED = {"uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32", "uint64": "UINT64",
            "int8": "INT8", "int16": "INT16", "int32": "INT32", "fp16": "FP16", "fp32": "FP32",
            "bf16": "BF16"}


class Echo:
    def __init__(self) -> None:
        self.input_width: int | None = 3
        self.output_datatypes = DECLARED

    def setup(self, device: str) -> None:
        pass

    def predict(self, batch: Batch) -> Mapping[str, Sequence[Any]]:
        rows = batch.tolist()
        firsts = [int(abs(r[0])) for r in rows]
        columns: dict[str, Sequence[Any]] = {
            "echo": rows, "label": [f"row-{n}" for n in firsts],
            "positive": [r[0] > 0 for r in rows], "total": [int(sum(r)) for r in rows],
            "fp64": [r[0] / 4 for r in rows]}
        for name, datatype in DECLARED.items():
            columns[name] = ([n / 4 for n in firsts] if datatype.startswith(("FP", "BF"))
                             else firsts)
        return columns
