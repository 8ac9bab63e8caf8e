"""The tensor codec of the Open Inference Protocol: every datatype, JSON and binary, both ways.

Expected bytes are written out by hand (little-endian, per the binary tensor extension), not
produced by the code under test.
"""

from __future__ import annotations

import math
import struct
from array import array
from typing import Any

import pytest

from service import _tensors as tensors
from tests.conftest import error_text

# datatype, values, their binary form (little-endian, row-major), JSON form
EVERY_DATATYPE: list[tuple[str, list[Any], bytes, list[Any]]] = [
    ("BOOL", [True, False, True], b"\x01\x00\x01", [True, False, True]),
    ("UINT8", [0, 255], b"\x00\xff", [0, 255]),
    ("UINT16", [1, 65535], b"\x01\x00\xff\xff", [1, 65535]),
    ("UINT32", [1, 4294967295], b"\x01\x00\x00\x00\xff\xff\xff\xff", [1, 4294967295]),
    ("UINT64", [2, 18446744073709551615], b"\x02" + b"\x00" * 7 + b"\xff" * 8,
     [2, 18446744073709551615]),
    ("INT8", [-128, 127], b"\x80\x7f", [-128, 127]),
    ("INT16", [-2, 300], b"\xfe\xff\x2c\x01", [-2, 300]),
    ("INT32", [-1, 65536], b"\xff\xff\xff\xff\x00\x00\x01\x00", [-1, 65536]),
    ("INT64", [-9223372036854775808, 5], b"\x00" * 7 + b"\x80" + b"\x05" + b"\x00" * 7,
     [-9223372036854775808, 5]),
    ("FP16", [1.5, -2.0], b"\x00\x3e\x00\xc0", [1.5, -2.0]),
    ("FP32", [1.5, -0.25], b"\x00\x00\xc0\x3f\x00\x00\x80\xbe", [1.5, -0.25]),
    ("FP64", [1.5, 0.1], b"\x00\x00\x00\x00\x00\x00\xf8\x3f" + b"\x9a\x99\x99\x99\x99\x99\xb9\x3f",
     [1.5, 0.1]),
    ("BF16", [1.5, -2.0], b"\xc0\x3f\x00\xc0", []),  # binary only
    ("BYTES", [b"ab", b"", b"\xff"], b"\x02\x00\x00\x00ab\x00\x00\x00\x00\x01\x00\x00\x00\xff",
     []),
]
IDS = [row[0] for row in EVERY_DATATYPE]


def test_the_table_has_every_datatype_of_the_protocol() -> None:
    assert list(tensors.DATATYPES) == ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16",
                               "INT32", "INT64", "FP16", "FP32", "FP64", "BF16", "BYTES"]
    assert IDS == list(tensors.DATATYPES)


@pytest.mark.parametrize("name, values, raw, _json", EVERY_DATATYPE, ids=IDS)
def test_binary_decodes_and_encodes_to_the_same_bytes(
        name: str, values: list[Any], raw: bytes, _json: list[Any]) -> None:
    dt = tensors.DATATYPES[name]
    assert tensors.decode_binary(dt, raw, len(values)) == values
    assert tensors.encode_binary(dt, values) == raw


@pytest.mark.parametrize("name, values, raw, json_data", [
    row for row in EVERY_DATATYPE if row[3]], ids=[row[0] for row in EVERY_DATATYPE if row[3]])
def test_json_data_decodes_to_the_values_and_back(
        name: str, values: list[Any], raw: bytes, json_data: list[Any]) -> None:
    dt = tensors.DATATYPES[name]
    assert tensors.decode_json(dt, json_data, len(values)) == values
    assert tensors.encode_json(dt, values) == json_data


def test_bytes_in_json_are_utf8_strings() -> None:
    dt = tensors.DATATYPES["BYTES"]
    assert tensors.decode_json(dt, ["ab", "é"], 2) == [b"ab", "é".encode()]
    assert tensors.encode_json(dt, [b"ab", "é".encode(), "x"]) == ["ab", "é", "x"]
    assert tensors.encode_binary(dt, ["é"]) == b"\x02\x00\x00\x00\xc3\xa9"


@pytest.mark.parametrize("data, count, expected", [
    ([[1, 2], [3, 4]], 4, [1, 2, 3, 4]),
    ([[[1], [2]], [[3], [4]]], 4, [1, 2, 3, 4]),
    ([1, 2, 3, 4], 4, [1, 2, 3, 4]),
    ([], 0, []),
], ids=["nested-2d", "nested-3d", "flat", "empty"])
def test_nested_json_data_is_read_row_major(data: list[Any], count: int,
                                            expected: list[Any]) -> None:
    assert tensors.decode_json(tensors.DATATYPES["INT32"], data, count) == expected


@pytest.mark.parametrize("name, data, count, message", [
    ("INT32", [1, 2], 3, "'data' has 2 values but the shape holds 3"),
    ("INT32", [[1, 2], 3], 3, "'data' has 2 values but the shape holds 3"),
    ("INT32", [[1, 2], [3]], 4, "'data' has 3 values but the shape holds 4"),
    ("INT32", {"a": 1}, 1, "'data' must be a list, got an object"),
    ("INT32", [1.5], 1, "INT32 'data' must hold integers, found 1.5"),
    ("INT32", [True], 1, "INT32 'data' must hold integers, found a boolean"),
    ("UINT64", [1.8446744073709552e19], 1, "UINT64 'data' must hold integers, found 1.8446744073709552e+19"),
    ("UINT8", [1, 256], 2, "value 256 is outside UINT8's range 0..255"),
    ("INT8", [-129], 1, "value -129 is outside INT8's range -128..127"),
    ("UINT32", [-1], 1, "value -1 is outside UINT32's range 0..4294967295"),
    ("BOOL", [1], 1, "BOOL 'data' must hold true or false, found 1"),
    ("FP32", ["1"], 1, "FP32 'data' must hold numbers, found a string"),
    ("FP32", [None], 1, "FP32 'data' must hold numbers, found null"),
    ("FP16", [70000.0], 1, "a value is outside FP16's finite range (about ±65504)"),
    ("BYTES", [1], 1, "BYTES 'data' must hold strings, found a number"),
    ("BF16", [1.0], 1, "BF16 has no JSON form: send it as binary data (parameters.binary_data_size)"),
], ids=["short", "ragged-mixed", "ragged", "not-a-list", "float-for-int", "bool-for-int",
        "uint64-overflowed-to-float", "uint8-range", "int8-range", "uint32-negative",
        "int-for-bool", "string-for-float", "null", "fp16-range", "number-for-bytes",
        "bf16-json"])
def test_bad_json_data_is_rejected_with_what_is_wrong(name: str, data: Any, count: int,
                                                      message: str) -> None:
    assert error_text(tensors.TensorError, tensors.decode_json, tensors.DATATYPES[name], data, count) == message


@pytest.mark.parametrize("name, raw, count, message", [
    ("FP32", b"\x00" * 7, 2, "binary data is 7 bytes but the shape holds 2 FP32 values (8 bytes)"),
    ("INT64", b"\x00" * 16, 1, "binary data is 16 bytes but the shape holds 1 INT64 values (8 bytes)"),
    ("BOOL", b"\x01\x02", 2, "BOOL binary data must be bytes 0 (false) or 1 (true)"),
    ("BYTES", b"\x05\x00\x00\x00ab", 1, "BYTES element 0 is 5 bytes but only 2 remain"),
    ("BYTES", b"\x01\x00\x00\x00a\x01\x00", 2,
     ("BYTES binary data ends before element 1 of 2 (each is a 4-byte little-endian length, "
     "then the bytes)")),
    ("BYTES", b"\x01\x00\x00\x00ab", 1, "BYTES binary data has 1 bytes after its 1 elements"),
], ids=["fp32-short", "int64-long", "bool-not-0-or-1", "bytes-element-cut", "bytes-length-cut",
        "bytes-trailing"])
def test_bad_binary_data_is_rejected_with_what_is_wrong(name: str, raw: bytes, count: int,
                                                        message: str) -> None:
    assert error_text(tensors.TensorError, tensors.decode_binary, tensors.DATATYPES[name], raw, count) == message


@pytest.mark.parametrize("value, bits", [
    (1.0, 0x3F80), (-2.0, 0xC000), (1.00390625, 0x3F80),  # halfway: rounds to even (down)
    (1.01171875, 0x3F82),  # halfway: rounds to even (up)
    (3.0e38, 0x7F62), (math.inf, 0x7F80), (math.nan, 0x7FC0),
], ids=["one", "minus-two", "tie-down", "tie-up", "large", "inf", "nan"])
def test_bf16_is_fp32_rounded_to_nearest_even(value: float, bits: int) -> None:
    assert tensors.encode_binary(tensors.DATATYPES["BF16"], [value]) == struct.pack("<H", bits)


@pytest.mark.parametrize("name, values, message", [
    ("INT64", [1.5], "a value does not fit INT64: required argument is not an integer"),
    ("UINT8", [300], "a value does not fit UINT8: ubyte format requires 0 <= number <= 255"),
    ("FP16", [1e6], "a value does not fit FP16: float too large to pack with e format"),
], ids=["float-for-int64", "uint8-range", "fp16-range"])
def test_outputs_that_do_not_fit_their_datatype_are_an_error(name: str, values: list[Any],
                                                             message: str) -> None:
    assert error_text(tensors.TensorError, tensors.encode_binary, tensors.DATATYPES[name], values) == message


@pytest.mark.parametrize("name, values, expected", [
    ("FP32", [1.5, -2.0], [1.5, -2.0]),
    ("FP64", [0.1], [0.10000000149011612]),
    ("INT64", [3, -4], [3.0, -4.0]),
    ("UINT8", [255], [255.0]),
    ("BOOL", [True, False], [1.0, 0.0]),
    ("FP16", [0.5], [0.5]),
    ("BF16", [1.5], [1.5]),
], ids=["fp32", "fp64-rounds", "int64", "uint8", "bool", "fp16", "bf16"])
def test_numbers_of_every_numeric_datatype_become_float32(name: str, values: list[Any],
                                                          expected: list[float]) -> None:
    assert tensors.to_float32(tensors.DATATYPES[name], values) == array("f", expected)


def test_fp32_binary_data_becomes_float32_without_a_detour() -> None:
    assert tensors.to_float32(tensors.DATATYPES["FP32"], None, b"\x00\x00\xc0\x3f") == array("f", [1.5])


@pytest.mark.parametrize("name, values, message", [
    ("FP64", [1e39], ("a value is not finite or outside float32's range (about ±3.4e38), which "
                     "this model takes")),
    ("FP32", [math.nan], ("a value is not finite or outside float32's range (about ±3.4e38), "
                         "which this model takes")),
    ("BYTES", [b"x"], "BYTES cannot be the input of this model: it takes numbers"),
], ids=["fp64-beyond-float32", "nan", "bytes"])
def test_values_the_float32_model_cannot_take_are_rejected(name: str, values: list[Any],
                                                           message: str) -> None:
    assert error_text(tensors.TensorError, tensors.to_float32, tensors.DATATYPES[name], values) == message


@pytest.mark.parametrize("shape, count, message", [
    ([2, 3], 6, ""), ([], 1, ""), ([0, 64], 0, ""),
    ([2, -1], 0, "shape [2, -1] is not a list of non-negative integers"),
    ([2, 1.5], 0, "shape [2, 1.5] is not a list of non-negative integers"),
    ([True], 0, "shape [True] is not a list of non-negative integers"),
    ("2,3", 0, "shape a string is not a list of non-negative integers"),
], ids=["2d", "scalar", "zero-rows", "negative", "float", "bool", "string"])
def test_element_count_of_a_shape(shape: Any, count: int, message: str) -> None:
    if message:
        assert error_text(tensors.TensorError, tensors.element_count, shape) == message
    else:
        assert tensors.element_count(shape) == count


@pytest.mark.parametrize("name, message", [
    ("FP32", ""), ("FLOAT32", ("datatype 'FLOAT32' is not a tensor datatype: use one of BOOL, "
                              "UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, "
                              "FP32, FP64, BF16, BYTES")),
    ("fp32", ("datatype 'fp32' is not a tensor datatype: use one of BOOL, UINT8, UINT16, UINT32, "
             "UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64, BF16, BYTES")),
    (None, ("datatype None is not a tensor datatype: use one of BOOL, UINT8, UINT16, UINT32, "
           "UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64, BF16, BYTES")),
], ids=["known", "numpy-name", "lower-case", "missing"])
def test_datatype_names_are_the_protocols_exactly(name: Any, message: str) -> None:
    if message:
        assert error_text(tensors.TensorError, tensors.parse_datatype, name) == message
    else:
        assert tensors.parse_datatype(name).name == name


@pytest.mark.parametrize("value, name", [
    (True, "BOOL"), (3, "INT64"), (0.5, "FP64"), ("a", "BYTES"), (b"a", "BYTES"),
    (None, "BYTES"),
], ids=["bool", "int", "float", "str", "bytes", "other"])
def test_a_python_value_gets_its_datatype(value: Any, name: str) -> None:
    assert tensors.infer_datatype(value) == name
