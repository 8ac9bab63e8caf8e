"""An object predictor of texts (``Texts``: text -> a deterministic float vector, cost = words)
over every protocol of a real process: ``/predict``, OpenAI's ``/v1/embeddings`` through the
real ``openai`` client (float and base64) and ``/v2`` BYTES through ``tritonclient`` (binary
and JSON), plus each protocol's answer to the client's mistakes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import openai
import pytest
import requests
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.conftest import ServerProcess, start_server
from tests.service.object_predictors import DIMENSIONS, vector

TEXTS = ["hello world", "a slightly longer sentence of text", "one"]


@pytest.fixture(scope="module")
def texts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server(tmp_path_factory.mktemp("texts"), env={
        "PREDICTOR": "tests.service.object_predictors:Texts", "DEVICE": "cpu",
        "REPLICAS_PER_DEVICE": "1", "MAX_REQUEST_ROWS": "8"})
    yield server
    server.stop()


def test_predict_answers_with_the_predictors_encode(texts: ServerProcess) -> None:
    reply = requests.post(texts.url + "/predict", json={"inputs": TEXTS}, timeout=10)
    assert reply.status_code == 200
    assert reply.json() == {"embeddings": [vector(t) for t in TEXTS]}


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_the_openai_client_gets_the_embeddings(texts: ServerProcess, encoding: str) -> None:
    client = openai.OpenAI(base_url=texts.url + "/v1", api_key="unused", max_retries=0)
    kwargs: dict[str, Any] = {} if encoding == "base64" else {"encoding_format": "float"}
    result = client.embeddings.create(input=TEXTS, model="texts", **kwargs)  # base64: default
    assert [d.index for d in result.data] == [0, 1, 2]
    assert [d.embedding for d in result.data] == [vector(t) for t in TEXTS]
    assert result.model == "Texts"
    assert (result.usage.prompt_tokens, result.usage.total_tokens) == (2 + 6 + 1, 9)
    one = client.embeddings.create(input="hello world", model="texts", **kwargs)
    assert [d.embedding for d in one.data] == [vector("hello world")]
    metrics = requests.get(texts.url + "/metrics", timeout=5).text
    assert 'predictor_requests_total{code="200",endpoint="/v1/embeddings"}' in metrics


@pytest.mark.parametrize("body, status, message", [
    ({"input": [], "model": "m"}, 400, "'input' is an empty list: send at least one string"),
    ({"input": ["a", 3], "model": "m"}, 400,
     ("'input' item 1 must be a string, got a number (token arrays are not supported: send "
     "the text)")),
    ({"input": "a", "model": "m", "dimensions": 4}, 400,
     ("'dimensions' is not supported: this model's embeddings have the length it makes; "
     "leave 'dimensions' out")),
    ({"input": "a", "model": "m", "encoding_format": "int8"}, 400,
     "'encoding_format' has value 'int8': use 'float' or 'base64'"),
    ({"input": ["a"] * 9, "model": "m"}, 413,
     "'input' has 9 strings, over the limit of 8 per request (MAX_REQUEST_ROWS): split it"),
    ({"model": "m"}, 400, "'input' is missing: send a string or a list of strings"),
], ids=["empty-list", "non-string-item", "dimensions", "encoding-format", "too-many",
        "no-input"])
def test_embeddings_refuse_the_clients_mistakes_in_openais_shape(
        texts: ServerProcess, body: dict[str, Any], status: int, message: str) -> None:
    reply = requests.post(texts.url + "/v1/embeddings", json=body, timeout=10)
    assert (reply.status_code, reply.json()) == (status, {"error": {
        "message": message, "type": "invalid_request_error", "param": None, "code": None}})


def test_embeddings_refuse_invalid_utf8_and_the_client_raises_it(texts: ServerProcess) -> None:
    reply = requests.post(texts.url + "/v1/embeddings", data=b'{"input": "\xff", "model": "m"}',
                          headers={"Content-Type": "application/json"}, timeout=10)
    assert reply.status_code == 400
    assert reply.json()["error"]["message"].startswith(
        "body is not valid JSON: str is not valid UTF-8")
    client = openai.OpenAI(base_url=texts.url + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError, match="'dimensions' is not supported"):
        client.embeddings.create(input="a", model="m", dimensions=4)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("shape", [[3], [3, 1]], ids=["N", "N-by-1"])
def test_tritonclient_sends_bytes_and_reads_fp32_vectors(
        texts: ServerProcess, binary: bool, shape: list[int]) -> None:
    client = triton.InferenceServerClient(texts.url.removeprefix("http://"))
    meta = client.get_model_metadata("Texts")
    assert (meta["inputs"], meta["outputs"]) == (
        [{"name": "input", "datatype": "BYTES", "shape": [-1]}],
        [{"name": "output", "datatype": "FP32", "shape": [-1, DIMENSIONS]}])
    tensor = triton.InferInput("input", shape, "BYTES")
    tensor.set_data_from_numpy(np.array(TEXTS, dtype=object).reshape(shape), binary_data=binary)
    result = client.infer("Texts", [tensor], outputs=[
        triton.InferRequestedOutput("output", binary_data=binary)])
    got = result.as_numpy("output")
    assert got.dtype == np.float32 and got.shape == (3, DIMENSIONS)
    assert got.tolist() == [vector(t) for t in TEXTS]
    client.close()


@pytest.mark.parametrize("tensor, message", [
    ({"name": "input", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]},
     ("input 'input' has datatype 'FP32' and shape [1, 3]: this model takes BYTES of shape [N] "
     "or [N, 1] (one UTF-8 text per item)")),
    ({"name": "input", "datatype": "BYTES", "shape": [2], "data": ["a", 1]},
     "input 'input' 'data' item 1 must be a string, got a number"),
    ({"name": "input", "datatype": "BYTES", "shape": [0], "data": []},
     "input 'input' has 0 items: send at least one"),
    ({"name": "input", "datatype": "BYTES", "shape": [9], "data": ["a"] * 9},
     ("input 'input' has 9 items, over the limit of 8 per request (MAX_REQUEST_ROWS): split the "
     "batch")),
], ids=["numbers", "non-string-item", "empty", "too-many"])
def test_v2_refuses_what_is_not_text(texts: ServerProcess, tensor: dict[str, Any],
                                     message: str) -> None:
    reply = requests.post(texts.url + "/v2/models/Texts/infer", json={"inputs": [tensor]},
                          timeout=10)
    assert reply.status_code in (400, 413)
    assert reply.json() == {"error": message}


def test_v2_refuses_binary_text_that_is_not_utf8(texts: ServerProcess) -> None:
    client = triton.InferenceServerClient(texts.url.removeprefix("http://"))
    tensor = triton.InferInput("input", [2], "BYTES")
    tensor.set_data_from_numpy(np.array([b"fine", b"\xff\xfe"], dtype=object))
    with pytest.raises(InferenceServerException,
                       match="input 'input' item 1 is not UTF-8 text: invalid start byte at "
                             "byte 0"):
        client.infer("Texts", [tensor])
    client.close()
