"""The pure parts of object predictors: which bodies are JSON, predict()'s outputs made JSON-ready,
a heavy request cut into parts that each fit a batch, and OpenAI's embeddings response."""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pytest

from service._core import _parts
from service._grouping import take_grouped
from service._openai import embeddings_response
from service._predict import is_json
from service._work import as_outputs


@pytest.mark.parametrize("content_type, expected", [
    (None, True),
    (b"application/json", True),
    (b"Application/JSON; charset=utf-8", True),
    (b"application/x-www-form-urlencoded", True),  # curl -d
    (b"application/vnd.api+json", True),
    (b"image/png", False),
    (b"application/octet-stream", False),
    (b"audio/wav", False),
    (b"text/plain", False),
], ids=["none", "json", "json-charset", "curl-d", "plus-json", "png", "octet-stream", "wav",
        "text"])
def test_which_bodies_are_json(content_type: bytes | None, expected: bool) -> None:
    assert is_json(content_type) is expected


@pytest.mark.parametrize("result, count, expected", [
    ([1, "a", {"b": 2}], 3, [1, "a", {"b": 2}]),
    ((0.5, 1.5), 2, [0.5, 1.5]),
    (np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32), 2, [[1.0, 2.0], [3.0, 4.0]]),
    ([np.array([1, 2]), np.int64(3)], 2, [[1, 2], 3]),
], ids=["json-values", "tuple", "one-array", "an-array-per-item"])
def test_outputs_become_json_values(result: Any, count: int, expected: list[Any]) -> None:
    assert as_outputs(result, count) == expected


@pytest.mark.parametrize("result, count, error, message", [
    ([1, 2], 3, ValueError,
     "predict() returned 2 outputs for 3 items: one output per item, in order"),
    (np.float32(1.0), 1, TypeError,
     "predict() returned float: expected a list with one output per item (1 items)"),
    ({"a": 1}, 1, TypeError,
     "predict() returned dict: expected a list with one output per item (1 items)"),
], ids=["too-few", "a-scalar-array", "a-dict"])
def test_outputs_that_do_not_fit_are_the_predictors_error(
        result: Any, count: int, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as info:
        as_outputs(result, count)
    assert str(info.value) == message


def test_a_heavy_request_is_cut_into_parts_of_similar_cost_that_each_fit_a_batch() -> None:
    costs = [30, 1, 20, 15, 38, 2, 25]
    items = [f"item{i}" for i in range(len(costs))]
    parts = _parts(costs, 3, 40, items)
    assert [(where, cost, key) for _, where, cost, key in parts] == [
        ([1, 5, 3], 18, 15), ([2], 20, 20), ([6], 25, 25), ([0], 30, 30), ([4], 38, 38)]
    assert sorted(i for _, where, _, _ in parts for i in where) == list(range(len(costs)))
    assert all(part_items == [items[i] for i in where] for part_items, where, _, _ in parts)


def test_embeddings_in_openais_shape_float_and_base64() -> None:
    vectors = [[0.5, -1.0], [0.25, 2.0]]
    plain = orjson.loads(embeddings_response(vectors, "float", "m", 7))
    assert plain == {"object": "list", "data": [
        {"object": "embedding", "embedding": [0.5, -1.0], "index": 0},
        {"object": "embedding", "embedding": [0.25, 2.0], "index": 1}],
        "model": "m", "usage": {"prompt_tokens": 7, "total_tokens": 7}}
    packed = orjson.loads(embeddings_response(vectors, "base64", "m", 7))["data"][1]["embedding"]
    assert list(struct.unpack("<2f", base64.b64decode(packed))) == [0.25, 2.0]
    with pytest.raises(ValueError, match="output 1 is not a list of floats"):
        embeddings_response([[1.0], {"a": 1}], "float", "m", 2)


@dataclass
class _Queued:
    name: str
    rows: int
    cost: int
    key: int
    enqueued: float = 0.0


def _queue(spec: str) -> list[_Queued]:
    """'a:1x5 b:2x3' -> requests named a, b of 1 row costing 5 and 2 rows costing 3 each."""
    out = []
    for i, word in enumerate(spec.split()):
        name, _, shape = word.partition(":")
        rows, _, each = shape.partition("x")
        out.append(_Queued(name, int(rows), int(rows) * int(each), int(each), float(i)))
    return out


@pytest.mark.parametrize("queue, limit, max_cost, batch", [
    ("a:1x5 b:1x40 c:1x5 d:1x6", 64, 40, "a c d"),  # b is far from the oldest's cost
    ("a:1x40 b:1x5 c:1x5", 64, 40, "a"),  # the oldest goes first, even when it fills the batch
    ("a:1x50", 64, 40, "a"),  # a request over the cost goes alone rather than never
    ("a:1x5 b:1x5 c:1x5 d:1x5", 2, 100, "a b"),  # the row limit, the older first among equals
    ("a:2x5 b:3x4 c:1x9", 64, 30, "a b"),  # key 4 is nearer 5 than 9: 10 + 12, then 9 is over
    ("a:1x10 b:1x30 c:1x12 d:1x8", 64, 31, "a c d"),  # nearest first: 12 and 8, then 30 is over
], ids=["far-cost-waits", "oldest-first", "over-the-cost-alone", "row-limit", "multi-row",
        "nearest-first"])
def test_a_batch_groups_similar_costs_behind_the_oldest(queue: str, limit: int, max_cost: int,
                                                       batch: str) -> None:
    live = _queue(queue)
    taken, rest = take_grouped(live, limit, max_cost)
    assert " ".join(q.name for q in taken) == batch
    assert [q.name for q in rest] == [q.name for q in live if q not in taken]
