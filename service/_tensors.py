"""Open Inference Protocol tensors: the datatypes, JSON ``data`` and the binary tensor extension.

Binary tensor data is little-endian, row-major, no padding; BOOL is one byte (0 or 1); BYTES
elements are a 4-byte little-endian length and then the bytes; BF16 is the upper half of an FP32
and exists in binary only (JSON has no way to say it). Sources: kserve/open-inference-protocol
``specification/protocol/inference_rest.md`` (Tensor Data Types) and triton-inference-server
``docs/protocol/extension_binary_data.md``. Pure: no numpy (the service image has none), struct
does the packing in C.
"""

from __future__ import annotations

import math
import struct
import sys
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

from service._errors import MessageError
from service._inputs import NUMBERS, float32s, json_kind

__all__ = [
    "DATATYPES",
    "Datatype",
    "TensorError",
    "decode_binary",
    "decode_json",
    "element_count",
    "encode_binary",
    "encode_json",
    "infer_datatype",
    "parse_datatype",
    "to_float32",
]

_LITTLE = sys.byteorder == "little"


class TensorError(MessageError, ValueError):
    """Tensor data that does not fit its datatype or shape; the message says how."""


@dataclass(frozen=True)
class Datatype:
    name: str
    code: str  # struct format character ("" for BYTES, "H" carries BF16's bits)
    size: int  # bytes per element in binary (0: variable, BYTES)
    kind: str  # bool | int | uint | float | bf16 | bytes
    low: int = 0  # range of an integer type
    high: int = 0
    json: bool = True  # expressible as JSON "data"
    fixed: bool = True  # packed by struct as it is (not BF16, not BYTES)


def _int(name: str, code: str, bits: int, signed: bool) -> Datatype:
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    return Datatype(name, code, bits // 8, "int" if signed else "uint", low, high)


# The protocol's Tensor Data Types table, in its order.
DATATYPES: dict[str, Datatype] = {t.name: t for t in (
    Datatype("BOOL", "?", 1, "bool"),
    _int("UINT8", "B", 8, False),
    _int("UINT16", "H", 16, False),
    _int("UINT32", "I", 32, False),
    _int("UINT64", "Q", 64, False),
    _int("INT8", "b", 8, True),
    _int("INT16", "h", 16, True),
    _int("INT32", "i", 32, True),
    _int("INT64", "q", 64, True),
    Datatype("FP16", "e", 2, "float"),
    Datatype("FP32", "f", 4, "float"),
    Datatype("FP64", "d", 8, "float"),
    Datatype("BF16", "H", 2, "bf16", json=False, fixed=False),
    Datatype("BYTES", "", 0, "bytes", fixed=False),
)}
_NAMES = ", ".join(DATATYPES)
_JSON_KINDS = {"bool": (frozenset((bool,)), "true or false"),
               "int": (frozenset((int,)), "integers"), "uint": (frozenset((int,)), "integers"),
               "float": (NUMBERS, "numbers"), "bytes": (frozenset((str,)), "strings")}


def parse_datatype(name: object) -> Datatype:
    found = DATATYPES.get(name) if isinstance(name, str) else None
    if found is None:
        raise TensorError(f"datatype {name!r} is not a tensor datatype: use one of {_NAMES}")
    return found


def element_count(shape: object) -> int:
    """The number of elements of ``shape`` (a list of non-negative integers)."""
    if type(shape) is not list or not all(type(d) is int and d >= 0 for d in shape):
        raise TensorError(f"shape {_show(shape)} is not a list of non-negative integers")
    return math.prod(shape)


def decode_json(dt: Datatype, data: object, count: int) -> list[Any]:
    """JSON ``data`` (flat or nested, row-major) as a flat list of checked Python values."""
    if not dt.json:
        raise TensorError(f"{dt.name} has no JSON form: send it as binary data "
                          "(parameters.binary_data_size)")
    if type(data) is not list:
        raise TensorError(f"'data' must be a list, got {json_kind(data)}")
    flat = data
    while flat and type(flat[0]) is list and all(type(x) is list for x in flat):
        flat = list(chain.from_iterable(flat))
    if len(flat) != count:
        raise TensorError(f"'data' has {len(flat)} values but the shape holds {count}")
    allowed, what = _JSON_KINDS[dt.kind]
    if not allowed.issuperset(map(type, flat)):
        bad = next(v for v in flat if type(v) not in allowed)
        found = repr(bad) if type(bad) in NUMBERS and dt.kind != "bytes" else json_kind(bad)
        raise TensorError(f"{dt.name} 'data' must hold {what}, found {found}")
    if dt.low or dt.high:
        if flat and (min(flat) < dt.low or max(flat) > dt.high):
            bad = next(v for v in flat if not dt.low <= v <= dt.high)
            raise TensorError(f"value {bad} is outside {dt.name}'s range {dt.low}..{dt.high}")
    elif dt.name == "FP16":
        try:
            struct.pack(f"<{len(flat)}e", *flat)
        except (OverflowError, struct.error):
            raise TensorError("a value is outside FP16's finite range (about ±65504)") from None
    elif dt.kind == "bytes":
        return [s.encode() for s in flat]
    return flat


def decode_binary(dt: Datatype, raw: bytes, count: int) -> list[Any]:
    """Binary tensor data (its ``binary_data_size`` bytes) as a flat list of Python values."""
    if dt.kind == "bytes":
        return _unpack_bytes(raw, count)
    if len(raw) != count * dt.size:
        raise TensorError(f"binary data is {len(raw)} bytes but the shape holds {count} "
                          f"{dt.name} values ({count * dt.size} bytes)")
    if dt.kind == "bool" and raw.translate(None, b"\x00\x01"):
        raise TensorError("BOOL binary data must be bytes 0 (false) or 1 (true)")
    values = list(struct.unpack(f"<{count}{dt.code}", raw))
    if dt.kind == "bf16":
        values = list(struct.unpack(f"<{count}f", struct.pack(f"<{count}I",
                                                              *(v << 16 for v in values))))
    return values


def to_float32(dt: Datatype, values: list[Any] | None, raw: bytes | None = None) -> array[float]:
    """Numbers (decoded ``values``, or FP32 ``raw`` binary data) as float32 for the model."""
    if dt.kind == "bytes":
        raise TensorError("BYTES cannot be the input of this model: it takes numbers")
    if raw is None or dt.name != "FP32":
        assert values is not None
        packed = float32s(values)
        if packed is None:
            raise _out_of_range()
        return packed
    out = array("f")
    out.frombytes(raw)
    if not _LITTLE:
        out.byteswap()
    if not math.isfinite(sum(out)):
        raise _out_of_range()
    return out


def encode_binary(dt: Datatype, flat: Sequence[Any]) -> bytes:
    """Flat values as binary tensor data."""
    if dt.fixed:  # the hot path of a /v2 response: its Struct made once per (code, count)
        key = (dt.code, len(flat))
        packer = _PACKERS.get(key) or _packer(*key)
        try:
            return packer.pack(*flat)
        except (OverflowError, struct.error) as exc:
            raise TensorError(f"a value does not fit {dt.name}: {exc}") from None
    if dt.kind == "bytes":
        items = [v if isinstance(v, bytes) else str(v).encode() for v in flat]
        return b"".join(chain.from_iterable((struct.pack("<I", len(v)), v) for v in items))
    try:
        if dt.kind == "bf16":
            bits = struct.unpack(f"<{len(flat)}I", struct.pack(f"<{len(flat)}f", *flat))
            return struct.pack(f"<{len(flat)}H", *map(_bf16_bits, bits))
        return struct.pack(f"<{len(flat)}{dt.code}", *flat)
    except (OverflowError, struct.error) as exc:
        raise TensorError(f"a value does not fit {dt.name}: {exc}") from None


def _packer(code: str, count: int) -> struct.Struct:
    """``count`` little-endian values of struct type ``code`` (kept for the next response)."""
    packer = struct.Struct(f"<{count}{code}")
    if len(_PACKERS) < _PACKERS_CACHED:
        _PACKERS[code, count] = packer
    return packer


_PACKERS: dict[tuple[str, int], struct.Struct] = {}
_PACKERS_CACHED = 256


def encode_json(dt: Datatype, flat: Sequence[Any]) -> list[Any]:
    """Flat values as JSON ``data``."""
    if not dt.json:
        raise TensorError(f"{dt.name} has no JSON form: request it as binary data "
                          "(parameters.binary_data)")
    if dt.kind == "bytes":
        try:
            return [v.decode() if isinstance(v, bytes) else str(v) for v in flat]
        except UnicodeDecodeError:
            raise TensorError("holds bytes that are not UTF-8: request it as binary data "
                              "(parameters.binary_data)") from None
    return flat if isinstance(flat, list) else list(flat)


def infer_datatype(value: object) -> str:
    """The datatype of a predictor's output element: Python floats are doubles (FP64); str,
    bytes and anything else are BYTES (sent as ``str(value)``)."""
    kind = type(value)
    if kind is bool:
        return "BOOL"
    if kind is int:
        return "INT64"
    if kind is float:
        return "FP64"
    return "BYTES"


def _unpack_bytes(raw: bytes, count: int) -> list[Any]:
    items, offset, end = [], 0, len(raw)
    for i in range(count):
        if offset + 4 > end:
            raise TensorError(f"BYTES binary data ends before element {i} of {count} "
                              "(each is a 4-byte little-endian length, then the bytes)")
        (size,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + size > end:
            raise TensorError(f"BYTES element {i} is {size} bytes but only {end - offset} "
                              "remain")
        items.append(raw[offset:offset + size])
        offset += size
    if offset != end:
        raise TensorError(f"BYTES binary data has {end - offset} bytes after its {count} "
                          "elements")
    return items


def _bf16_bits(u: int) -> int:
    if (u & 0x7F800000) == 0x7F800000 and u & 0x007FFFFF:
        return (u >> 16) | 0x0040  # NaN stays a (quiet) NaN
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF  # round to nearest even


def _out_of_range() -> TensorError:
    return TensorError("a value is not finite or outside float32's range (about ±3.4e38), "
                       "which this model takes")



def _show(value: object) -> str:
    return str(value) if type(value) is list else json_kind(value)
