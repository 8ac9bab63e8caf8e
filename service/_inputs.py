"""Request bodies of ``POST /predict``: JSON in (orjson), float32 rows out, or a 4xx that says why.

The happy path touches each number in C only (``struct.pack`` to float32, ``sum`` for the range;
a type scan only when the body could hold a boolean); the slow, descriptive checks only run to
explain a rejection.
"""

from __future__ import annotations

import math
import struct
from array import array
from collections.abc import Sequence
from itertools import chain
from typing import Any

import orjson

from service._errors import MessageError

__all__ = ["EXAMPLE", "NUMBERS", "BadRequest", "check_rows", "decode_json", "float32s", "inputs_of",
           "json_kind"]

EXAMPLE = '{"inputs": [[0, 0, 5, 13, ...], ...]}'
NUMBERS = frozenset((int, float))  # the types of JSON's numbers
_JSON_TYPES = {str: "a string", bool: "a boolean", type(None): "null", list: "a list",
               dict: "an object", int: "a number", float: "a number"}


class BadRequest(MessageError):
    """The client's mistake: an HTTP status (4xx) and a message that names what was wrong,
    plus any headers of the answer (those of ``V2Error``, which also answers a 5xx)."""

    def __init__(self, status: int, message: str,
                 headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.headers = list(headers)


def json_kind(value: object) -> str:
    """What a decoded JSON value is, in words (``a string``, ``a number``, ...)."""
    return _JSON_TYPES.get(type(value), type(value).__name__)


def decode_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if not body.strip():
            raise BadRequest(400, f"body is empty: send JSON like {EXAMPLE}") from None
        if b"NaN" in body or b"Infinity" in body or "infinity" in str(exc):
            raise BadRequest(400, "inputs must be finite numbers: NaN and Infinity are not "
                                  f"allowed (body is not valid JSON: {exc})") from None
        raise BadRequest(400, f"body is not valid JSON: {exc}") from None


def inputs_of(payload: Any) -> Any:
    """The ``inputs`` member of a decoded body."""
    if type(payload) is not dict:
        raise BadRequest(422, f"body must be a JSON object like {EXAMPLE}, got {json_kind(payload)}")
    try:
        return payload["inputs"]
    except KeyError:
        raise BadRequest(422, f"body has no 'inputs': send JSON like {EXAMPLE}") from None


def check_rows(inputs: Any, width: int, max_rows: int, maybe_bools: bool = True) -> array[float]:
    """``inputs`` as a row-major float32 array of ``len(inputs) * width`` values.

    ``maybe_bools=False`` (the body has no ``true``/``false``) skips the per-value type scan:
    packing rejects every other non-number by itself.
    """
    if type(inputs) is not list:
        raise BadRequest(422, f"'inputs' must be a list of rows (lists of {width} numbers), "
                              f"got {json_kind(inputs)}")
    rows = len(inputs)
    if rows == 0:
        raise BadRequest(422, "'inputs' is empty: send at least one row")
    if rows > max_rows:
        raise BadRequest(422, f"'inputs' has {rows} rows, over the limit of {max_rows} per "
                              "request (MAX_REQUEST_ROWS): split the batch")
    for i, row in enumerate(inputs):
        if type(row) is not list:
            raise BadRequest(422, f"row {i} of 'inputs' must be a list of {width} numbers, "
                                  f"got {json_kind(row)}")
        if len(row) != width:
            raise BadRequest(422, f"row {i} of 'inputs' has {len(row)} values, expected {width}")
    flat = inputs[0] if rows == 1 else list(chain.from_iterable(inputs))
    if maybe_bools and not NUMBERS.issuperset(map(type, flat)):
        raise _not_numbers(inputs) or _out_of_range()
    values = float32s(flat)
    if values is None:  # a string, null, list or object among the values, else out of range
        raise _not_numbers(inputs) or _out_of_range()
    return values


def float32s(flat: Sequence[Any]) -> array[float] | None:
    """Numbers as float32 (for /predict and /v2); None when one is not a number (a string,
    null, list or object), or is beyond float32's finite range (a huge int, inf, 1e39)."""
    values = array("f")
    try:  # struct packs ints and floats to float32 in C, faster than array("f", flat)
        values.frombytes(struct.pack(f"{len(flat)}f", *flat))
    except (OverflowError, struct.error):
        return None
    return values if math.isfinite(sum(values)) else None  # sum: inf past float32's range


def _out_of_range() -> BadRequest:
    return BadRequest(422, "'inputs' has a value outside float32's finite range (about ±3.4e38)")


def _not_numbers(inputs: list[list[Any]]) -> BadRequest | None:
    for i, row in enumerate(inputs):
        for j, value in enumerate(row):
            if type(value) not in NUMBERS:
                return BadRequest(422, f"row {i} of 'inputs' must contain only numbers, "
                                       f"found {json_kind(value)} at position {j}")
    return None
