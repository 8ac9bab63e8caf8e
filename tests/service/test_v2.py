"""The Open Inference Protocol against a real ``python -m service`` process: tritonclient.http
(the client KServe, Triton and perf_analyzer users have) and raw HTTP for every datatype and
every error."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pytest
import requests
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.conftest import ServerProcess, digits_split, start_server
from tests.service.v2_predictors import DECLARED

pytestmark = pytest.mark.slow
ROW = [0.0] * 64


@pytest.fixture(scope="module")
def echo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A Python predictor with a column of every datatype, served as MODEL_NAME=echo."""
    server = start_server(tmp_path_factory.mktemp("v2-echo"), env={
        "PREDICTOR": "tests.service.v2_predictors:Echo", "MODEL_NAME": "echo"})
    yield server
    server.stop()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[Any]:
    client = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
    yield client
    client.close()


def digits_input(rows: np.ndarray, binary: bool = True) -> Any:
    tensor = triton.InferInput("input", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows.astype(np.float32), binary_data=binary)
    return tensor


def test_health_and_readiness_through_tritonclient(client: Any) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("digits")
    assert client.is_model_ready("digits", "1")
    assert not client.is_model_ready("digits", "2")
    assert not client.is_model_ready("mnist")


def test_server_and_model_metadata_through_tritonclient(client: Any) -> None:
    assert client.get_server_metadata() == {
        "name": "gpu-launcher", "version": "0.1.0", "extensions": ["binary_tensor_data", "generate"]}
    expected = {"name": "digits", "versions": ["1"], "platform": "pytorch_torchscript",
                "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}],
                "outputs": [{"name": "predictions", "datatype": "INT64", "shape": [-1]},
                            {"name": "scores", "datatype": "FP32", "shape": [-1, 10]}]}
    assert client.get_model_metadata("digits") == expected
    assert client.get_model_metadata("digits", "1") == expected


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_infer_through_tritonclient_answers_as_predict_does(
        server: ServerProcess, client: Any, binary: bool) -> None:
    _, x_test, _, _ = digits_split()
    rows = x_test[:5]
    outputs = [triton.InferRequestedOutput(n, binary_data=binary)
               for n in ("predictions", "scores")]
    result = client.infer("digits", [digits_input(rows, binary)], outputs=outputs,
                          request_id="req-7")
    expected = requests.post(server.url + "/predict", json={"inputs": rows.tolist()},
                             timeout=30).json()
    response = result.get_response()
    assert (response["id"], response["model_name"], response["model_version"]) == (
        "req-7", "digits", "1")
    assert result.as_numpy("predictions").tolist() == expected["predictions"]
    assert result.as_numpy("predictions").dtype == np.int64
    scores = result.as_numpy("scores")
    assert (scores.dtype, scores.shape) == (np.float32, (5, 10))
    np.testing.assert_allclose(scores, np.array(expected["scores"]), atol=1e-6)
    assert all(("parameters" in o) is binary for o in response["outputs"])


def test_tritonclient_defaults_binary_in_and_out_and_no_id(client: Any) -> None:
    result = client.infer("digits", [digits_input(np.zeros((2, 64)))])
    response = result.get_response()
    assert "id" not in response
    assert [(o["name"], o["parameters"]) for o in response["outputs"]] == [
        ("predictions", {"binary_data_size": 16}), ("scores", {"binary_data_size": 80})]
    assert result.as_numpy("scores").shape == (2, 10)


def test_only_the_requested_outputs_come_back(client: Any) -> None:
    result = client.infer("digits", [digits_input(np.zeros((1, 64)))],
                          outputs=[triton.InferRequestedOutput("scores")], model_version="1")
    assert [o["name"] for o in result.get_response()["outputs"]] == ["scores"]
    assert result.as_numpy("predictions") is None


@pytest.mark.parametrize("call, status, message", [
    (lambda c: c.infer("mnist", [digits_input(np.zeros((1, 64)))]), "404",
     "unknown model 'mnist': this server serves 'digits'"),
    (lambda c: c.infer("digits", [digits_input(np.zeros((1, 64)))], model_version="3"), "404",
     "model 'digits' has no version '3': its version is '1'"),
    (lambda c: c.get_model_metadata("mnist"), "404",
     "unknown model 'mnist': this server serves 'digits'"),
    (lambda c: c.infer("digits", [digits_input(np.zeros((1, 63)))]), "400",
     "input 'input' has shape [1, 63]: model 'digits' takes one input, 'input' (FP32 [-1, 64])"),
    (lambda c: c.infer("digits", [digits_input(np.zeros((1, 64)))],
                       outputs=[triton.InferRequestedOutput("logits")]), "400",
     "'outputs' asks for 'logits': model 'digits' has outputs 'predictions', 'scores'"),
    (lambda c: c.infer("digits", [triton.InferInput("pixels", [1, 64], "FP32")
                                  .set_data_from_numpy(np.zeros((1, 64), np.float32))]), "400",
     "'inputs' has 'pixels': model 'digits' takes one input, 'input' (FP32 [-1, 64])"),
], ids=["unknown-model", "unknown-version", "metadata-unknown-model", "wrong-width",
        "unknown-output", "wrong-input-name"])
def test_errors_surface_as_inference_server_exception_with_the_servers_message(
        client: Any, call: Any, status: str, message: str) -> None:
    with pytest.raises(InferenceServerException) as caught:
        call(client)
    assert (caught.value.status(), caught.value.message()) == (status, message)


def test_digits_hold_out_accuracy_through_v2_binary_is_at_least_95_percent(client: Any) -> None:
    _, x_test, _, y_test = digits_split()
    predictions: list[int] = []
    for start in range(0, len(x_test), 100):
        result = client.infer("digits", [digits_input(x_test[start:start + 100])])
        predictions += result.as_numpy("predictions").tolist()
    accuracy = sum(int(p == y) for p, y in zip(predictions, y_test)) / len(y_test)
    assert accuracy >= 0.95, accuracy


def test_concurrent_tritonclient_requests_on_two_cpu_replicas_each_get_their_own_rows(
        server_factory: Any) -> None:
    server = server_factory(env={"DEVICE": "cpu,cpu"})
    _, x_test, _, _ = digits_split()
    rows = x_test[:40]
    expected = requests.post(server.url + "/predict", json={"inputs": rows.tolist()},
                             timeout=30).json()["predictions"]
    before = batches_per_replica(server)
    client = triton.InferenceServerClient(f"127.0.0.1:{server.port}", concurrency=8)
    try:
        pending = [client.async_infer("digits", [digits_input(rows[i:i + 1])], request_id=str(i))
                   for i in range(len(rows))]
        results = [p.get_result() for p in pending]
    finally:
        client.close()
    assert [r.get_response()["id"] for r in results] == [str(i) for i in range(len(rows))]
    assert [int(r.as_numpy("predictions")[0]) for r in results] == expected
    replicas = requests.get(server.url + "/readyz", timeout=5).json()["replicas"]
    assert [r["state"] for r in replicas] == ["ready", "ready"]
    after = batches_per_replica(server)
    took = {r: after.get(r, 0) - before.get(r, 0) for r in ("0", "1")}
    assert all(took.values()), took  # both replicas ran some of these requests' batches


def batches_per_replica(server: ServerProcess) -> dict[str, float]:
    """The batches each replica ran so far (``predictor_batch_size_count`` by replica)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(server.url + "/metrics", timeout=5).text
    return {s.labels["replica"]: s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == "predictor_batch_size_count"}


def test_gzip_requests_from_tritonclient_are_inflated(client: Any) -> None:
    result = client.infer("digits", [digits_input(np.zeros((3, 64)))],
                          request_compression_algorithm="gzip")
    assert result.as_numpy("predictions").shape == (3,)


# --- raw HTTP: every datatype in, every datatype out, every error ---

def infer(server: ServerProcess, request: dict[str, Any], binary: bytes = b"",
          model: str = "echo", headers: dict[str, str] | None = None) -> requests.Response:
    head = orjson.dumps(request)
    extra = {"Inference-Header-Content-Length": str(len(head))} if binary else {}
    return requests.post(f"{server.url}/v2/models/{model}/infer", data=head + binary,
                         headers={**extra, **(headers or {})}, timeout=30)


def split(reply: requests.Response) -> tuple[dict[str, Any], bytes]:
    size = reply.headers.get("Inference-Header-Content-Length")
    if size is None:
        return reply.json(), b""
    return orjson.loads(reply.content[:int(size)]), reply.content[int(size):]


ROW_3 = [1, 0, 2]
# datatype, the row as binary tensor data, as JSON data (None: binary only)
INPUTS: list[tuple[str, bytes, list[Any] | None]] = [
    ("BOOL", b"\x01\x00\x01", [True, False, True]),
    ("UINT8", b"\x01\x00\x02", ROW_3), ("UINT16", struct.pack("<3H", *ROW_3), ROW_3),
    ("UINT32", struct.pack("<3I", *ROW_3), ROW_3), ("UINT64", struct.pack("<3Q", *ROW_3), ROW_3),
    ("INT8", b"\x01\x00\x02", ROW_3), ("INT16", struct.pack("<3h", *ROW_3), ROW_3),
    ("INT32", struct.pack("<3i", *ROW_3), ROW_3), ("INT64", struct.pack("<3q", *ROW_3), ROW_3),
    ("FP16", struct.pack("<3e", *ROW_3), ROW_3), ("FP32", struct.pack("<3f", *ROW_3), ROW_3),
    ("FP64", struct.pack("<3d", *ROW_3), ROW_3),
    ("BF16", b"\x80\x3f\x00\x00\x00\x40", None),  # 1.0, 0.0, 2.0
]


@pytest.mark.parametrize("datatype, raw, data", INPUTS, ids=[r[0] for r in INPUTS])
@pytest.mark.parametrize("form", ["binary", "json"])
def test_every_numeric_input_datatype_reaches_the_model_as_its_values(
        echo: ServerProcess, datatype: str, raw: bytes, data: list[Any] | None, form: str
        ) -> None:
    tensor: dict[str, Any] = {"name": "input", "shape": [1, 3], "datatype": datatype}
    if form == "binary":
        tensor["parameters"] = {"binary_data_size": len(raw)}
        reply = infer(echo, {"inputs": [tensor], "outputs": [{"name": "echo"}]}, raw)
    elif data is None:
        reply = infer(echo, {"inputs": [{**tensor, "data": [1, 0, 2]}]})
        assert (reply.status_code, reply.json()) == (400, {"error": (
            "input 'input': BF16 has no JSON form: send it as binary data "
            "(parameters.binary_data_size)")})
        return
    else:
        reply = infer(echo, {"inputs": [{**tensor, "data": [data]}],
                             "outputs": [{"name": "echo"}]})
    assert reply.status_code == 200, reply.text
    values = [1.0, 0.0, 1.0] if datatype == "BOOL" else [1.0, 0.0, 2.0]
    assert reply.json()["outputs"] == [
        {"name": "echo", "datatype": "FP64", "shape": [1, 3], "data": values}]


@pytest.mark.parametrize("form", ["binary", "json"])
def test_a_bytes_input_is_decoded_and_refused_by_a_number_model(echo: ServerProcess,
                                                                form: str) -> None:
    tensor: dict[str, Any] = {"name": "input", "shape": [1, 3], "datatype": "BYTES"}
    raw = b"".join(struct.pack("<I", 1) + c for c in (b"a", b"b", b"c"))
    if form == "binary":
        reply = infer(echo, {"inputs": [{**tensor, "parameters": {"binary_data_size": 15}}]}, raw)
    else:
        reply = infer(echo, {"inputs": [{**tensor, "data": ["a", "b", "c"]}]})
    assert (reply.status_code, reply.json()) == (400, {"error": (
        "input 'input': BYTES cannot be the input of this model: it takes numbers")})


# output column, its datatype, the values for the row [5, 0, 0] as binary and as JSON data
OUTPUTS: list[tuple[str, str, bytes, list[Any] | None]] = [
    ("positive", "BOOL", b"\x01", [True]), ("total", "INT64", struct.pack("<q", 5), [5]),
    ("fp64", "FP64", struct.pack("<d", 1.25), [1.25]),
    ("label", "BYTES", b"\x05\x00\x00\x00row-5", ["row-5"]),
    ("uint8", "UINT8", b"\x05", [5]), ("uint16", "UINT16", b"\x05\x00", [5]),
    ("uint32", "UINT32", struct.pack("<I", 5), [5]), ("uint64", "UINT64", struct.pack("<Q", 5), [5]),
    ("int8", "INT8", b"\x05", [5]), ("int16", "INT16", struct.pack("<h", 5), [5]),
    ("int32", "INT32", struct.pack("<i", 5), [5]), ("fp16", "FP16", struct.pack("<e", 1.25), [1.25]),
    ("fp32", "FP32", struct.pack("<f", 1.25), [1.25]), ("bf16", "BF16", b"\xa0\x3f", None),
]


def test_the_metadata_lists_every_output_with_its_datatype(echo: ServerProcess) -> None:
    metadata = requests.get(echo.url + "/v2/models/echo", timeout=10).json()
    assert metadata["platform"] == "python"
    assert {o["name"]: o["datatype"] for o in metadata["outputs"]} == {
        "echo": "FP64", **{name: datatype for name, datatype, _, _ in OUTPUTS}}
    assert set(DECLARED) <= {o["name"] for o in metadata["outputs"]}


@pytest.mark.parametrize("name, datatype, raw, data", OUTPUTS, ids=[r[1] for r in OUTPUTS])
@pytest.mark.parametrize("form", ["binary", "json"])
def test_every_output_datatype_comes_back_as_binary_or_json(
        echo: ServerProcess, name: str, datatype: str, raw: bytes, data: list[Any] | None,
        form: str) -> None:
    request = {"id": "o", "inputs": [{"name": "input", "shape": [1, 3], "datatype": "INT32",
                                      "data": [5, 0, 0]}],
               "outputs": [{"name": name, "parameters": {"binary_data": form == "binary"}}]}
    reply = infer(echo, request)
    if form == "json" and data is None:
        assert (reply.status_code, reply.json()) == (400, {"error": (
            f"output '{name}': BF16 has no JSON form: request it as binary data "
            "(parameters.binary_data)")})
        return
    assert reply.status_code == 200, reply.text
    head, tail = split(reply)
    entry = {"name": name, "datatype": datatype, "shape": [1]}
    if form == "binary":
        assert reply.headers["content-type"] == "application/octet-stream"
        assert (head["outputs"], tail) == ([{**entry, "parameters": {
            "binary_data_size": len(raw)}}], raw)
    else:
        assert reply.headers["content-type"] == "application/json"
        assert (head["outputs"], tail) == ([{**entry, "data": data}], b"")


def test_binary_data_output_returns_every_output_as_binary_in_order(echo: ServerProcess) -> None:
    reply = infer(echo, {"parameters": {"binary_data_output": True}, "inputs": [
        {"name": "input", "shape": [2, 3], "datatype": "FP32", "data": [[5, 0, 0], [1, 1, 1]]}]})
    head, tail = split(reply)
    sizes = [o["parameters"]["binary_data_size"] for o in head["outputs"]]
    assert sum(sizes) == len(tail)
    offsets = dict(zip([o["name"] for o in head["outputs"]],
                       [sum(sizes[:i]) for i in range(len(sizes))]))
    assert struct.unpack_from("<6d", tail, offsets["echo"]) == (5, 0, 0, 1, 1, 1)
    assert struct.unpack_from("<2q", tail, offsets["total"]) == (5, 3)


JSON_ROW = orjson.dumps({"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32",
                                     "data": ROW}]})
BINARY_HEAD = orjson.dumps({"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32",
                                        "parameters": {"binary_data_size": 256}}]})


@pytest.mark.parametrize("method, path, body, headers, status, error", [
    ("POST", "/v2/models/digits/infer", b"{", {}, 400,
     "the inference request is not valid JSON: unexpected end of data: line 1 column 2 (char 1)"),
    ("POST", "/v2/models/digits/infer", JSON_ROW, {"Inference-Header-Content-Length": "9999"},
     400, ("Inference-Header-Content-Length is '9999': expected the JSON header's size, at most "
          f"the body's {len(JSON_ROW)} bytes")),
    ("POST", "/v2/models/digits/infer", BINARY_HEAD + b"\x00" * 255,
     {"Inference-Header-Content-Length": str(len(BINARY_HEAD))}, 400,
     ("input 'input': parameters.binary_data_size is 256 but only 255 bytes follow the JSON "
     "header")),
    ("POST", "/v2/models/digits/infer", orjson.dumps({"inputs": [
        {"name": "input", "shape": [1, 64], "datatype": "INT64", "data": [0.5] + ROW[1:]}]}),
     {}, 400, "input 'input': INT64 'data' must hold integers, found 0.5"),
    ("POST", "/v2/models/digits/infer", b"x" * 200_001, {}, 413,
     "body is 200001 bytes, over the limit of 200000 bytes (MAX_BODY_BYTES)"),
    ("POST", "/v2/models/digits/infer", b"{}", {"Content-Encoding": "br"}, 400,
     "Content-Encoding 'br' is not supported: send gzip, deflate or an uncompressed body"),
    ("POST", "/v2/models/nope/infer", b"{}", {}, 404,
     "unknown model 'nope': this server serves 'digits'"),
    ("GET", "/v2/models/digits/versions/2", b"", {}, 404,
     "model 'digits' has no version '2': its version is '1'"),
    ("GET", "/v2/models/digits/infer", b"", {}, 405,
     "GET is not allowed on /v2/models/digits/infer: use POST"),
    ("POST", "/v2/health/ready", b"", {}, 405, "POST is not allowed on /v2/health/ready: use GET"),
    ("GET", "/v2/repository/index", b"", {}, 404, "no such endpoint: GET /v2/repository/index"),
], ids=["malformed-json", "header-length-past-body", "binary-short", "float-for-int64",
        "body-over-limit", "unknown-encoding", "unknown-model", "unknown-version",
        "infer-needs-post", "health-needs-get", "unknown-route"])
def test_each_error_is_a_status_and_an_error_message_and_the_server_stays_ready(
        server: ServerProcess, method: str, path: str, body: bytes, headers: dict[str, str],
        status: int, error: str) -> None:
    reply = requests.request(method, server.url + path, data=body, headers=headers, timeout=30)
    assert (reply.status_code, reply.json()) == (status, {"error": error})
    assert requests.get(server.url + "/v2/health/ready", timeout=5).json() == {"ready": True}


def test_v2_and_predict_are_counted_by_their_own_endpoint_label(server: ServerProcess) -> None:
    infer(server, {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32",
                               "data": ROW}]}, model="digits")
    requests.get(server.url + "/v2/models/digits/versions/1/ready", timeout=5)
    metrics = requests.get(server.url + "/metrics", timeout=5).text
    assert 'predictor_requests_total{code="200",endpoint="/v2/models/{model_name}/infer"}' in metrics
    assert ('predictor_requests_total{code="200",'
            'endpoint="/v2/models/{model_name}/versions/{model_version}/ready"}') in metrics
