"""The Open Inference Protocol for an object predictor: a BYTES input of shape ``[N]`` or
``[N, 1]`` is N items (UTF-8 text as ``str``); the outputs are one tensor, ``output``: float
vectors of one length as FP32 ``[N, D]``, anything else as BYTES ``[N]`` (a ``str`` as its
UTF-8, ``bytes`` as they are, any other value as its JSON).

Pure functions; :mod:`service._v2` parses the rest of the request (id, parameters, outputs)
the same way for both kinds of model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import orjson

from service._inputs import json_kind
from service._tensors import DATATYPES, TensorError, decode_binary

__all__ = ["OUTPUT_NAME", "bytes_items", "describe_objects", "object_outputs"]

OUTPUT_NAME = "output"
_BYTES = DATATYPES["BYTES"]


def describe_objects(name: str, info: Mapping[str, str], outputs: Sequence[Any]) -> Any:
    """An object model's metadata: input BYTES ``[-1]``; the output as the warm-up's outputs
    (the ``example``'s) show it: FP32 ``[-1, D]`` for float vectors, else (or without an
    example) BYTES ``[-1]``."""
    from service._v2 import INPUT_NAME, ModelSpec, TensorSpec

    dims = _vector_length(outputs)
    output = (TensorSpec(OUTPUT_NAME, "FP32", (-1, dims)) if dims is not None
              else TensorSpec(OUTPUT_NAME, "BYTES", (-1,)))
    return ModelSpec(name, "python", TensorSpec(INPUT_NAME, "BYTES", (-1,)), (output,),
                     items=True)


def bytes_items(tensor: dict[str, Any], binary: bytes, has_header: bool,
                max_rows: int) -> tuple[int, list[str], int]:
    """The input tensor's items (rows, the strings, binary bytes used); V2Error (400) for
    anything but BYTES ``[N]`` / ``[N, 1]`` of UTF-8 text."""
    from service._v2 import INPUT_NAME, V2Error, binary_size

    where = f"input {INPUT_NAME!r}"
    shape = tensor.get("shape")
    if (tensor.get("datatype") != "BYTES" or type(shape) is not list or len(shape) not in (1, 2)
            or not all(type(d) is int for d in shape) or (len(shape) == 2 and shape[1] != 1)):
        raise V2Error(400, f"{where} has datatype {tensor.get('datatype')!r} and shape "
                           f"{shape!r}: this model takes BYTES of shape [N] or [N, 1] (one "
                           "UTF-8 text per item)")
    rows = shape[0]
    if rows < 1:
        raise V2Error(400, f"{where} has 0 items: send at least one")
    if rows > max_rows:
        raise V2Error(413, f"{where} has {rows} items, over the limit of {max_rows} per "
                           "request (MAX_REQUEST_ROWS): split the batch")
    size = binary_size(tensor, binary, has_header)
    if size is None:
        data = tensor["data"]
        if type(data) is list and all(type(d) is list and len(d) == 1 for d in data):
            data = [d[0] for d in data]
        if type(data) is not list or len(data) != rows:
            got = f"{len(data)} values" if type(data) is list else json_kind(data)
            raise V2Error(400, f"{where} 'data' has {got} for its shape {shape}")
        for i, value in enumerate(data):
            if type(value) is not str:
                raise V2Error(400, f"{where} 'data' item {i} must be a string, got "
                                   f"{json_kind(value)}")
        return rows, data, 0
    try:
        raw = decode_binary(_BYTES, binary[:size], rows)
    except TensorError as exc:
        raise V2Error(400, f"{where}: {exc.message}") from None
    items = []
    for i, value in enumerate(raw):
        try:
            items.append(value.decode())
        except UnicodeDecodeError as exc:
            raise V2Error(400, f"{where} item {i} is not UTF-8 text: {exc.reason} at byte "
                               f"{exc.start}") from None
    return rows, items, size


def object_outputs(request: Any, outputs: list[Any]) -> tuple[Any, dict[str, list[Any]]]:
    """The request with its ``output`` typed as these outputs are, and the column to encode."""
    from service._v2 import TensorSpec

    dims = _vector_length(outputs)
    if dims is not None:
        spec = TensorSpec(OUTPUT_NAME, "FP32", (-1, dims))
        column = outputs
    else:
        spec = TensorSpec(OUTPUT_NAME, "BYTES", (-1,))
        column = [o if isinstance(o, bytes) else o.encode() if isinstance(o, str)
                  else orjson.dumps(o) for o in outputs]
    chosen = tuple((spec, binary) for _, binary in request.outputs)
    return replace(request, outputs=chosen), {OUTPUT_NAME: column}


def _vector_length(outputs: Sequence[Any]) -> int | None:
    """D when every output is a list of D numbers (D >= 1), else None."""
    if not outputs or type(outputs[0]) is not list or not outputs[0]:
        return None
    dims = len(outputs[0])
    for output in outputs:
        if type(output) is not list or len(output) != dims:
            return None
        for value in output:
            if type(value) is not float and type(value) is not int:
                return None
    return dims
