from __future__ import annotations

from array import array

import pytest

from service._inputs import EXAMPLE, BadRequest, check_rows, decode_json, inputs_of


def parse(body: bytes, width: int = 3, max_rows: int = 4) -> array[float]:
    return check_rows(inputs_of(decode_json(body)), width, max_rows)


@pytest.mark.parametrize("body, expected", [
    (b'{"inputs": [[1, 2, 3]]}', [1.0, 2.0, 3.0]),
    (b'{"inputs": [[1.5, -2, 0], [0, 0, 16]]}', [1.5, -2.0, 0.0, 0.0, 0.0, 16.0]),
    (b'{"inputs": [[1e38, 0, 0]], "extra": 1}', [1e38, 0.0, 0.0]),
], ids=["one-row", "two-rows", "extra-keys-ignored"])
def test_valid_bodies_become_float32_rows(body: bytes, expected: list[float]) -> None:
    assert parse(body) == array("f", expected)


@pytest.mark.parametrize("body, status, message", [
    (b"", 400, f"body is empty: send JSON like {EXAMPLE}"),
    (b'{"inputs": [[1, 2, 3]', 400,
     "body is not valid JSON: unexpected end of data: line 1 column 22 (char 21)"),
    (b"inputs=1,2,3", 400,
     "body is not valid JSON: unexpected character, expected a JSON value: line 1 column 1 (char 0)"),
    (b'{"inputs": [[NaN, 1, 2]]}', 400,
     ("inputs must be finite numbers: NaN and Infinity are not allowed (body is not valid JSON: "
     "unexpected character, expected a JSON value: line 1 column 14 (char 13))")),
    (b'{"inputs": [[1, Infinity, 2]]}', 400,
     ("inputs must be finite numbers: NaN and Infinity are not allowed (body is not valid JSON: "
     "unexpected character, expected a JSON value: line 1 column 17 (char 16))")),
    (b'{"inputs": [[1e400, 1, 2]]}', 400,
     ("inputs must be finite numbers: NaN and Infinity are not allowed (body is not valid JSON: "
     "number is infinity when parsed as double: line 1 column 14 (char 13))")),
    (b"[[1, 2, 3]]", 422, f"body must be a JSON object like {EXAMPLE}, got a list"),
    (b"7", 422, f"body must be a JSON object like {EXAMPLE}, got a number"),
    (b'{"rows": [[1, 2, 3]]}', 422, f"body has no 'inputs': send JSON like {EXAMPLE}"),
    (b'{"inputs": 5}', 422, "'inputs' must be a list of rows (lists of 3 numbers), got a number"),
    (b'{"inputs": "1,2,3"}', 422,
     "'inputs' must be a list of rows (lists of 3 numbers), got a string"),
    (b'{"inputs": []}', 422, "'inputs' is empty: send at least one row"),
    (b'{"inputs": [1, 2, 3]}', 422, "row 0 of 'inputs' must be a list of 3 numbers, got a number"),
    (b'{"inputs": [[1, 2]]}', 422, "row 0 of 'inputs' has 2 values, expected 3"),
    (b'{"inputs": [[1, 2, 3], [1, 2]]}', 422, "row 1 of 'inputs' has 2 values, expected 3"),
    (b'{"inputs": [[1, "2", 3]]}', 422,
     "row 0 of 'inputs' must contain only numbers, found a string at position 1"),
    (b'{"inputs": [[1, 2, 3], [1, 2, null]]}', 422,
     "row 1 of 'inputs' must contain only numbers, found null at position 2"),
    (b'{"inputs": [[true, 2, 3]]}', 422,
     "row 0 of 'inputs' must contain only numbers, found a boolean at position 0"),
    (b'{"inputs": [[[1], [2], [3]]]}', 422,
     "row 0 of 'inputs' must contain only numbers, found a list at position 0"),
    (b'{"inputs": [[1e39, 2, 3]]}', 422,
     "'inputs' has a value outside float32's finite range (about ±3.4e38)"),
    (b'{"inputs": [[1, 2, 3], [1, 2, 3], [1, 2, 3], [1, 2, 3], [1, 2, 3]]}', 422,
     "'inputs' has 5 rows, over the limit of 4 per request (MAX_REQUEST_ROWS): split the batch"),
], ids=["empty", "malformed", "not-json", "nan", "infinity", "overflow-literal", "array-body",
        "scalar-body", "missing-inputs", "scalar-inputs", "string-inputs", "empty-batch",
        "flat-row", "wrong-width", "ragged", "string-value", "null-value", "bool-value",
        "too-deep", "beyond-float32", "too-many-rows"])
def test_bad_bodies_are_rejected_with_a_message(body: bytes, status: int, message: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse(body)
    assert (info.value.status, info.value.message) == (status, message)


@pytest.mark.parametrize("maybe_bools", [True, False], ids=["type-scan", "no-type-scan"])
@pytest.mark.parametrize("inputs, message", [
    ([[10**400, 1, 2]], "'inputs' has a value outside float32's finite range (about ±3.4e38)"),
    ([[1, 2, 3], [1, "2", 3]],
     "row 1 of 'inputs' must contain only numbers, found a string at position 1"),
    ([[1, None, 3]], "row 0 of 'inputs' must contain only numbers, found null at position 1"),
    ([[1, 2, {"a": 1}]], "row 0 of 'inputs' must contain only numbers, found an object at position 2"),
    ([[[1], 2, 3]], "row 0 of 'inputs' must contain only numbers, found a list at position 0"),
], ids=["huge-integer", "string", "null", "object", "list"])
def test_non_numbers_are_named_with_or_without_the_type_scan(
        inputs: list[list[object]], message: str, maybe_bools: bool) -> None:
    with pytest.raises(BadRequest) as info:
        check_rows(inputs, 3, 4, maybe_bools)
    assert (info.value.status, info.value.message) == (422, message)
