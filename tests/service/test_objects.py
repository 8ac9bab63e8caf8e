"""Object predictors against a real ``python -m service`` process: items from JSON and from raw
bytes, cost-aware batching (never over MAX_BATCH_COST, similar costs together, the oldest never
starved), one bad item failing only its own request, a crash failing only its batch, and the
client's mistakes answered 4xx with nothing else in flight lost."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
import requests

from tests.conftest import ServerProcess, start_server
from tests.service.object_predictors import png

HOLD = "sleep:0.5"  # an item that holds its batch: what is sent meanwhile queues up
MAX_COST = 40


def _server(tmp: Any, name: str, **env: str) -> ServerProcess:
    return start_server(tmp, env={"PREDICTOR": f"tests.service.object_predictors:{name}",
                                  "DEVICE": "cpu", "REPLICAS_PER_DEVICE": "1", **env})


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = _server(tmp_path_factory.mktemp("records"), "Records",
                     MAX_BATCH_COST=str(MAX_COST), MAX_REQUEST_ROWS="16")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = _server(tmp_path_factory.mktemp("images"), "Images")
    yield server
    server.stop()


def post(server: ServerProcess, items: list[Any]) -> requests.Response:
    return requests.post(server.url + "/predict", json={"inputs": items}, timeout=30)


def behind_a_held_batch(server: ServerProcess, batches: list[list[Any]]
                        ) -> tuple[requests.Response, list[requests.Response]]:
    """Send a request that holds its batch, then ``batches`` in this order while it runs (they
    queue together); the held one's answer and theirs."""
    with ThreadPoolExecutor(len(batches) + 1) as pool:
        held = pool.submit(post, server, [HOLD])
        time.sleep(0.15)
        sent: list[Future[requests.Response]] = []
        for items in batches:
            sent.append(pool.submit(post, server, items))
            time.sleep(0.02)  # they arrive in this order
        return held.result(), [f.result() for f in sent]


def test_an_object_predictor_takes_json_and_says_what_it_is(records: ServerProcess) -> None:
    reply = post(records, ["a", {"any": "json"}])
    assert reply.status_code == 200
    assert [o["item"] for o in reply.json()["outputs"]] == ["a", {"any": "json"}]
    about = requests.get(records.url + "/", timeout=5).json()
    assert about == {"service": "gpu-launcher", "kind": "object",
                     "example": {"inputs": ["a short text"]}, "model": {},
                     "max_request_rows": 16}
    meta = requests.get(records.url + "/v2/models/Records", timeout=5).json()
    assert (meta["inputs"], meta["outputs"]) == (
        [{"name": "input", "datatype": "BYTES", "shape": [-1]}],
        [{"name": "output", "datatype": "BYTES", "shape": [-1]}])
    schema = requests.get(records.url + "/openapi.json", timeout=5).json()
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert body["application/json"]["example"] == {"inputs": ["a short text"]}
    answer = schema["paths"]["/predict"]["post"]["responses"]["200"]["content"]
    assert "encode(outputs)" in answer["application/json"]["schema"]["description"]


def test_v2_answers_outputs_that_are_not_vectors_as_json_bytes(records: ServerProcess) -> None:
    body = {"inputs": [{"name": "input", "datatype": "BYTES", "shape": [2, 1],
                        "data": ["a", "b"]}]}
    reply = requests.post(records.url + "/v2/models/Records/infer", json=body, timeout=10)
    assert reply.status_code == 200
    output = reply.json()["outputs"][0]
    assert (output["name"], output["datatype"], output["shape"]) == ("output", "BYTES", [2])
    assert [json.loads(o)["item"] for o in output["data"]] == ["a", "b"]


def test_an_object_predictor_takes_raw_bytes(images: ServerProcess) -> None:
    image = png(640, 480)
    reply = requests.post(images.url + "/predict", data=image,
                          headers={"Content-Type": "image/png"}, timeout=10)
    assert (reply.status_code, reply.json()) == (
        200, {"outputs": [{"width": 640, "height": 480, "bytes": len(image)}]})
    gif = requests.post(images.url + "/predict", data=b"GIF89a" + bytes(40),
                        headers={"Content-Type": "application/octet-stream"}, timeout=10)
    assert (gif.status_code, gif.json()) == (
        400, {"detail": "not a PNG image: it starts with b'GIF89a\\x00\\x00'"})
    as_json = requests.post(images.url + "/predict", json={"inputs": []}, timeout=10)
    assert (as_json.status_code, as_json.json()) == (
        400, {"detail": "send the image's bytes (Content-Type: image/png)"})


def test_batches_stay_within_the_cost_group_similar_costs_and_starve_no_one(
        records: ServerProcess) -> None:
    long = "L" * MAX_COST  # a whole batch's cost
    fives, tens = ["f" * 5] * 8, ["t" * 10] * 4
    mixed = [long] + [item for pair in zip(fives, tens + [None] * 4) for item in pair if item]
    held, replies = behind_a_held_batch(records, [[item] for item in mixed])
    assert held.status_code == 200 and all(r.status_code == 200 for r in replies)
    outputs = [r.json()["outputs"][0] for r in replies]
    batches = {o["batch"]: o["costs"] for o in outputs}
    assert all(sum(costs) <= MAX_COST for costs in batches.values())
    # the long item came first: it runs next, alone, though cheaper items arrived after it
    assert outputs[0]["batch"] == held.json()["outputs"][0]["batch"] + 1
    assert outputs[0]["costs"] == [MAX_COST]
    # the eight 5s and the four 10s, interleaved in the queue, each fill a batch of their own
    assert sorted(sorted(costs) for costs in batches.values()) == [
        [5] * 8, [10] * 4, [MAX_COST]]


def test_a_request_heavier_than_a_batch_is_answered_whole_and_in_order(
        records: ServerProcess) -> None:
    items = ["a" * 30, "b", "c" * 20, "d" * 15, "e" * 38, "f" * 2, "g" * 25]  # 131: 4 batches
    reply = post(records, items)
    assert reply.status_code == 200
    outputs = reply.json()["outputs"]
    assert [o["item"] for o in outputs] == items
    assert all(sum(o["costs"]) <= MAX_COST for o in outputs)
    assert len({o["batch"] for o in outputs}) >= 4


def test_a_bad_item_fails_only_its_own_request(records: ServerProcess) -> None:
    batch = [["one"], ["two"], ["bad"], ["three"], ["four", "five"]]
    _, replies = behind_a_held_batch(records, batch)
    assert [r.status_code for r in replies] == [200, 200, 400, 200, 200]
    assert replies[2].json() == {"detail": "the item 'bad' is refused"}
    assert [[o["item"] for o in r.json()["outputs"]] for r in replies if r.ok] == [
        ["one"], ["two"], ["three"], ["four", "five"]]


def test_a_crash_fails_its_batch_once_logged_and_the_replica_serves_on(
        records: ServerProcess) -> None:
    before = records.log().count("inference failed on replica")
    _, replies = behind_a_held_batch(records, [["ok"], ["crash"], ["fine"]])
    assert [(r.status_code, r.json()) for r in replies] == [
        (500, {"detail": "inference failed: RuntimeError: the model crashed"})] * 3
    deadline = time.monotonic() + 5
    while records.log().count("inference failed on replica") == before and (
            time.monotonic() < deadline):
        time.sleep(0.05)
    log = records.log()
    assert log.count("inference failed on replica") == before + 1
    assert "RuntimeError: the model crashed" in log.rsplit("inference failed on replica", 1)[1]
    assert post(records, ["after"]).status_code == 200


@pytest.mark.parametrize("body, headers, status, detail", [
    (b'{"inputs": []}', {}, 422, "the request has no items: send at least one"),
    (b'{"inputs": "' + b"x" * 3 + b'"}', {}, 400, 'send {"inputs": [...]}'),
    (b'{"inputs": ["\xff"]}', {}, 400,
     ("body is not valid JSON: str is not valid UTF-8: surrogates not allowed: line 1 column 1 "
     "(char 0)")),
    (b'{"inputs": [' + b",".join([b'"a"'] * 17) + b"]}", {}, 413,
     "the request has 17 items, over the limit of 16 per request (MAX_REQUEST_ROWS): split it"),
    (b'{"inputs": ["' + b"y" * 41 + b'"]}', {}, 413,
     "item 0 costs 41, over the limit of 40 per batch (MAX_BATCH_COST): send a smaller item"),
    (b"not json", {"Content-Type": "application/json"}, 400,
     "body is not valid JSON: invalid literal, expected 'null': line 1 column 1 (char 0)"),
    (b"\x00\x01", {"Content-Type": "application/octet-stream"}, 400, 'send {"inputs": [...]}'),
], ids=["empty-list", "not-a-list", "invalid-utf8", "too-many-items", "costlier-than-a-batch",
        "not-json", "bytes-to-a-json-predictor"])
def test_the_clients_mistakes_are_4xx_and_lose_nothing_in_flight(
        records: ServerProcess, body: bytes, headers: dict[str, str], status: int,
        detail: str) -> None:
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(post, records, [HOLD, "kept"])
        time.sleep(0.1)
        reply = requests.post(records.url + "/predict", data=body, headers=headers, timeout=10)
        assert (reply.status_code, reply.json()) == (status, {"detail": detail})
        kept = held.result()
    assert kept.status_code == 200
    assert [o["item"] for o in kept.json()["outputs"]] == [HOLD, "kept"]
