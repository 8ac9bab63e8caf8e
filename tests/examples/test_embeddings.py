"""examples/embeddings against a real ``python -m service`` process: its vectors are
sentence-transformers' own (cosine >= 0.9999) over /predict, OpenAI's /v1/embeddings (the real
``openai`` client, float and base64) and /v2 (``tritonclient``, BYTES in, binary and JSON out);
bad input is a clear 4xx and nothing else in flight is lost."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import requests

from tests.conftest import ServerProcess, start_server
from tests.examples.embeddings_reference import (
    DIMENSIONS,
    EXAMPLE,
    MIN_COSINE,
    SENTENCES,
    min_cosine,
    python_warnings,
    token_count,
)

pytestmark = pytest.mark.slow
MAX_REQUEST_ROWS = 64
# A 1 MB text: truncated at the model's 256 tokens as sentence-transformers does, not refused.
MEGABYTE = "The sea was calm that evening and the boats came in. " * 19_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The example served as `launcher up --predictor predict:Embeddings --code ...` does."""
    server = start_server(tmp_path_factory.mktemp("embeddings"), env={
        "PREDICTOR": "predict:Embeddings", "MODEL_NAME": "minilm",
        "PYTHONPATH": os.pathsep.join([str(EXAMPLE), os.environ.get("PYTHONPATH", "")]),
        "MAX_REQUEST_ROWS": str(MAX_REQUEST_ROWS), "HF_HUB_OFFLINE": "1", "DEVICE": "cpu"})
    yield server
    server.stop()


def test_the_service_starts_without_warnings(server: ServerProcess) -> None:
    assert python_warnings(server.log()) == []


def test_predict_answers_sentence_transformers_vectors(server: ServerProcess) -> None:
    reply = requests.post(server.url + "/predict", json={"inputs": SENTENCES}, timeout=60)
    assert reply.status_code == 200, reply.text
    embeddings = reply.json()["embeddings"]
    assert min_cosine(embeddings, SENTENCES) >= MIN_COSINE


@pytest.mark.parametrize("encoding_format", ["float", None],
                         ids=["float", "base64-the-clients-default"])
def test_the_openai_client_gets_the_same_vectors(server: ServerProcess,
                                                 encoding_format: str | None) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    # Without encoding_format the client asks for base64 and decodes the floats itself.
    fmt: Any = {"encoding_format": encoding_format} if encoding_format else {}
    try:
        answer = client.embeddings.create(model="minilm", input=SENTENCES, **fmt)
    finally:
        client.close()
    assert [d.index for d in answer.data] == list(range(len(SENTENCES)))
    assert min_cosine([d.embedding for d in answer.data], SENTENCES) >= MIN_COSINE
    tokens = sum(token_count(s) for s in SENTENCES)
    assert (answer.model, answer.usage.prompt_tokens, answer.usage.total_tokens) == (
        "minilm", tokens, tokens)


@pytest.mark.parametrize("binary_in, binary_out, shape", [
    (True, True, [4]),
    (False, False, [4]),
    (True, False, [4, 1]),
], ids=["binary", "json", "binary-in-json-out-n-by-1"])
def test_tritonclient_sends_sentences_and_reads_embeddings(server: ServerProcess,
                                                           binary_in: bool, binary_out: bool,
                                                           shape: list[int]) -> None:
    import tritonclient.http as triton

    client = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
    try:
        tensor = triton.InferInput("input", shape, "BYTES")
        tensor.set_data_from_numpy(np.array(SENTENCES, dtype=np.object_).reshape(shape),
                                   binary_data=binary_in)
        result = client.infer("minilm", [tensor], outputs=[
            triton.InferRequestedOutput("output", binary_data=binary_out)])
    finally:
        client.close()
    vectors = result.as_numpy("output")
    assert (vectors.dtype, vectors.shape) == (np.float32, (len(SENTENCES), DIMENSIONS))
    assert min_cosine(vectors.tolist(), SENTENCES) >= MIN_COSINE


def test_a_megabyte_text_is_truncated_at_256_tokens_not_refused(server: ServerProcess) -> None:
    assert len(MEGABYTE.encode()) > 1_000_000
    from openai import OpenAI

    client = OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    try:
        answer = client.embeddings.create(model="minilm", input=[MEGABYTE, "Call me Ishmael."])
    finally:
        client.close()
    assert answer.usage.prompt_tokens == 256 + token_count("Call me Ishmael.")
    assert min_cosine([d.embedding for d in answer.data],
                      [MEGABYTE, "Call me Ishmael."]) >= MIN_COSINE


JSON = "application/json"
INVALID_JSON = ("body is not valid JSON: str is not valid UTF-8: surrogates not allowed: line 1 "
                "column 1 (char 0)")
NOT_AN_OBJECT = {"detail": 'expected a JSON object {"inputs": ["a sentence", ...]}'}


def v2_bytes(raw: bytes) -> tuple[bytes, dict[str, str]]:
    """A /v2 infer body with one BYTES item ``raw`` as binary data, and its headers."""
    data = struct.pack("<I", len(raw)) + raw
    head = json.dumps({"inputs": [{"name": "input", "shape": [1], "datatype": "BYTES",
                                   "parameters": {"binary_data_size": len(data)}}]}).encode()
    return head + data, {"Inference-Header-Content-Length": str(len(head)),
                         "Content-Type": "application/octet-stream"}


@pytest.mark.parametrize("path, body, content_type, status, answer", [
    ("/predict", b'{"inputs": []}', JSON, 400,
     {"detail": '"inputs" is empty: send at least one sentence'}),
    ("/predict", b'{"inputs": ["a sentence", 7]}', JSON, 400,
     {"detail": '"inputs"[1] is int, not a string'}),
    ("/predict", b'{"inputs": [["nested"]]}', JSON, 400,
     {"detail": '"inputs"[0] is list, not a string'}),
    ("/predict", b'{"inputs": "a sentence"}', JSON, 400, NOT_AN_OBJECT),
    ("/predict", b'["a sentence"]', JSON, 400, NOT_AN_OBJECT),
    ("/predict", b'{"inputs": ["a sentence"]}', "text/plain", 400,
     {"detail": 'send JSON (Content-Type: application/json): {"inputs": ["a sentence", ...]}'}),
    ("/predict", b'{"inputs": ["ok", "\xff\xfe bad"]}', JSON, 400, {"detail": INVALID_JSON}),
    ("/predict", json.dumps({"inputs": ["x"] * (MAX_REQUEST_ROWS + 1)}).encode(), JSON, 413,
     {"detail": f"the request has {MAX_REQUEST_ROWS + 1} items, over the limit of "
                f"{MAX_REQUEST_ROWS} per request (MAX_REQUEST_ROWS): split it"}),
    ("/v1/embeddings", b'{"input": ["\xff"], "model": "minilm"}', JSON, 400,
     {"error": {"message": INVALID_JSON, "type": "invalid_request_error", "param": None,
                "code": None}}),
    ("/v1/embeddings", b'{"input": [], "model": "minilm"}', JSON, 400,
     {"error": {"message": "'input' is an empty list: send at least one string",
                "type": "invalid_request_error", "param": None, "code": None}}),
    ("/v2/models/minilm/infer", b"\xff\xfe", None, 400,
     {"error": "input 'input' item 0 is not UTF-8 text: invalid start byte at byte 0"}),
], ids=["empty-list", "non-string-item", "nested-list", "bare-string", "bare-list",
        "not-json", "invalid-utf8", "too-many-items", "v1-invalid-utf8", "v1-empty-list",
        "v2-invalid-utf8"])
def test_bad_input_is_a_clear_4xx(server: ServerProcess, path: str, body: bytes,
                                  content_type: str | None, status: int,
                                  answer: dict[str, Any]) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    if path.startswith("/v2/"):
        body, headers = v2_bytes(body)
    reply = requests.post(server.url + path, data=body, timeout=30, headers=headers)
    assert (reply.status_code, reply.json()) == (status, answer)


def test_bad_requests_lose_nothing_else_in_flight(server: ServerProcess) -> None:
    bad: list[tuple[str, Any]] = [
        ("/predict", {"inputs": []}),
        ("/predict", {"inputs": [None]}),
        ("/predict", {"inputs": ["x"] * (MAX_REQUEST_ROWS + 1)}),
        ("/v1/embeddings", {"input": [], "model": "minilm"}),
    ]
    good = [("/predict", {"inputs": [s]}) for s in SENTENCES * 4]
    calls = [c for pair in zip(good, bad * 4) for c in pair]

    def post(call: tuple[str, Any]) -> int:
        return requests.post(server.url + call[0], json=call[1], timeout=60).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(post, calls))
    assert statuses[0::2] == [200] * len(good)
    assert all(400 <= s < 500 for s in statuses[1::2]), statuses
