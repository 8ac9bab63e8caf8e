"""The service as a real process over real HTTP (``python -m service`` on 127.0.0.1)."""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests

from tests.conftest import ROOT, ServerProcess, digits_split
from tests.service.modelfiles import picker_export, picker_torchscript

pytestmark = pytest.mark.slow
ROW = [0.0] * 64
NO_CUDA = ("DEVICE={} but CUDA cannot be used: this torch build has no CUDA support (a CPU wheel) "
           "(hint: set DEVICE=auto to fall back to the CPU, or give the container a GPU)")
ROWS_1025 = b'{"inputs": [' + b",".join([b"[" + b",".join([b"0"] * 64) + b"]"] * 1025) + b"]}"


def post(server: ServerProcess, body: Any, **kwargs: Any) -> requests.Response:
    data = body if isinstance(body, (bytes, str)) else orjson.dumps(body)
    return requests.post(server.url + "/predict", data=data, timeout=30, **kwargs)


def test_digits_hold_out_accuracy_through_the_server_is_at_least_95_percent(
        server: ServerProcess) -> None:
    _, x_test, _, y_test = digits_split()
    predictions: list[int] = []
    for start in range(0, len(x_test), 100):
        reply = post(server, {"inputs": x_test[start:start + 100].tolist()})
        assert reply.status_code == 200, reply.text
        predictions += reply.json()["predictions"]
    accuracy = sum(int(p == y) for p, y in zip(predictions, y_test)) / len(y_test)
    assert accuracy >= 0.95, accuracy


@pytest.mark.parametrize("body, status, detail", [
    (b'{"inputs": [[0, 0', 400, ("body is not valid JSON: unexpected end of data: "
                                "line 1 column 18 (char 17)")),
    (b"pixels=0,0,5,13", 400, ("body is not valid JSON: unexpected character, expected a JSON "
                              "value: line 1 column 1 (char 0)")),
    ({"pixels": [ROW]}, 422, ("body has no 'inputs': send JSON like "
                             '{"inputs": [[0, 0, 5, 13, ...], ...]}')),
    ({"inputs": [[0.0] * 63]}, 422, "row 0 of 'inputs' has 63 values, expected 64"),
    ({"inputs": [ROW, [0.0] * 65]}, 422, "row 1 of 'inputs' has 65 values, expected 64"),
    ({"inputs": []}, 422, "'inputs' is empty: send at least one row"),
    ({"inputs": [["0"] * 64]}, 422,
     "row 0 of 'inputs' must contain only numbers, found a string at position 0"),
    (b'{"inputs": [[NaN' + b", 0" * 63 + b"]]}", 400,
     ("inputs must be finite numbers: NaN and Infinity are not allowed (body is not valid JSON: "
     "unexpected character, expected a JSON value: line 1 column 14 (char 13))")),
    (b'{"inputs": [[-Infinity' + b", 0" * 63 + b"]]}", 400,
     ("inputs must be finite numbers: NaN and Infinity are not allowed (body is not valid JSON: "
     "no digit after sign: line 1 column 15 (char 14))")),
    ({"inputs": ROW}, 422, "row 0 of 'inputs' must be a list of 64 numbers, got a number"),
    ({"inputs": [[ROW]]}, 422, "row 0 of 'inputs' has 1 values, expected 64"),
    ({"inputs": 3}, 422, "'inputs' must be a list of rows (lists of 64 numbers), got a number"),
    (b"3", 422, ('body must be a JSON object like {"inputs": [[0, 0, 5, 13, ...], ...]}, '
                "got a number")),
    (ROWS_1025, 422, ("'inputs' has 1025 rows, over the limit of 1024 per request "
                                    "(MAX_REQUEST_ROWS): split the batch")),
    (b"x" * 200_001, 413, "body is 200001 bytes, over the limit of 200000 bytes (MAX_BODY_BYTES)"),
], ids=["malformed-json", "not-json", "missing-inputs", "wrong-width", "ragged", "empty-batch",
        "strings", "nan", "infinity", "flat-nesting", "deep-nesting", "scalar-inputs",
        "scalar-body", "too-many-rows", "body-over-limit"])
def test_bad_input_gets_a_4xx_with_a_message_and_the_server_stays_ready(
        server: ServerProcess, body: Any, status: int, detail: str) -> None:
    reply = post(server, body)
    assert (reply.status_code, reply.json()) == (status, {"detail": detail})
    assert requests.get(server.url + "/readyz", timeout=5).status_code == 200


def test_200_concurrent_single_row_requests_each_get_their_own_rows_prediction(
        server: ServerProcess) -> None:
    _, x_test, _, _ = digits_split()
    rows = x_test[:200].tolist()
    expected = post(server, {"inputs": rows}).json()
    with ThreadPoolExecutor(200) as pool:
        replies = list(pool.map(lambda row: post(server, {"inputs": [row]}), rows))
    assert [r.status_code for r in replies] == [200] * 200
    assert [r.json()["predictions"][0] for r in replies] == expected["predictions"]
    for reply, scores in zip(replies, expected["scores"]):
        assert reply.json()["scores"][0] == pytest.approx(scores, abs=1e-6)


@pytest.mark.parametrize("writer", [picker_torchscript, picker_export], ids=["torchscript", "export"])
def test_a_model_file_from_model_path_is_served_with_its_own_width(
        tmp_path: Path, server_factory: Any, writer: Any) -> None:
    path = writer(tmp_path / ("picker.pt2" if writer is picker_export else "picker.pt"))
    server = server_factory(env={"MODEL_PATH": str(path)})
    reply = post(server, {"inputs": [[5, 1, 0], [1, 5, 0]]})
    assert reply.status_code == 200, reply.text
    assert reply.json()["predictions"] == [0, 1]
    assert post(server, {"inputs": [ROW]}).json() == {
        "detail": "row 0 of 'inputs' has 64 values, expected 3"}


def test_sigterm_with_requests_in_flight_loses_none_and_exits_0(server_factory: Any) -> None:
    server = server_factory(env={"PREDICTOR": "tests.service.slow_predictor:SlowEcho",
                                 "SLOW_SECONDS": "1.0", "MAX_BATCH_ROWS": "4",
                                 "MAX_QUEUE_SECONDS": "10"})  # 3 s of work: none shed
    with ThreadPoolExecutor(12) as pool:
        futures = [pool.submit(post, server, {"inputs": [[i, 0]]}) for i in range(12)]
        time.sleep(0.5)  # all 12 are sent; the first batch is in its forward pass
        server.proc.terminate()
        replies = [f.result() for f in futures]
    assert [(r.status_code, r.json()) for r in replies] == [
        (200, {"predictions": [float(i)]}) for i in range(12)]
    assert server.proc.wait(30) == 0
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url + "/healthz", timeout=2)


def test_device_cuda_without_a_gpu_is_reported_by_readyz(server_factory: Any) -> None:
    server = server_factory(env={"DEVICE": "cuda"}, wait=False)
    reply = server.wait_settled(60)
    assert reply is not None and reply.status_code == 503
    assert reply.json() == {"status": "failed", "reason": NO_CUDA.format("cuda"), "replicas": [
        {"replica": 0, "device": "cuda", "state": "failed", "reason": NO_CUDA.format("cuda")}]}


def test_the_log_says_where_the_service_listens(server: ServerProcess) -> None:
    assert (f"Uvicorn running on http://127.0.0.1:{server.port} (Press CTRL+C to quit)"
            in server.log())


def test_a_port_in_use_exits_2_naming_port_with_a_hint() -> None:
    import os
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "service"], check=False, cwd=ROOT,
                              env={**os.environ, "HOST": "127.0.0.1", "PORT": str(port)},
                              capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stderr) == (2, (
        f"error: Setting 'PORT' has value '{port}'. 127.0.0.1:{port} is already in use.\n"
        "hint: set PORT to a free port, or stop what holds it\n"))


def test_a_zip_that_is_not_a_model_fails_naming_model_path_with_a_hint(
        server_factory: Any, tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "model.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model/data.pkl", b"weights")
    server = server_factory(env={"MODEL_PATH": str(path), "DEVICE": "cpu",
                                 "REPLICAS_PER_DEVICE": "2"}, wait=False)
    reply = server.wait_settled(60)
    reason = (f"MODEL_PATH={path}: torch cannot load it as a TorchScript model (Expected "
              'hasRecord("version") to be true, but got false.) (hint: point MODEL_PATH '
              "(launcher up --model) at a file saved with torch.jit.save (.pt) or "
              "torch.export.save (.pt2), or unset it for the built-in digits model)")
    assert reply is not None and reply.status_code == 503
    assert reply.json()["status"] == "failed"
    assert reply.json()["reason"] == reason  # both replicas: the one reason, once


def test_device_cpu_and_cuda0_without_a_gpu_serves_from_the_cpu_and_reports_cuda0_failed(
        server_factory: Any) -> None:
    server = server_factory(env={"DEVICE": "cpu,cuda:0", "REPLICAS_PER_DEVICE": "1"})
    ready = requests.get(server.url + "/readyz", timeout=5)
    reply = post(server, {"inputs": [ROW, ROW]})
    metrics = requests.get(server.url + "/metrics", timeout=5).text
    assert (ready.status_code, ready.json()) == (200, {"status": "ready", "replicas": [
        {"replica": 0, "device": "cpu", "state": "ready", "reason": None},
        {"replica": 1, "device": "cuda:0", "state": "failed", "reason": NO_CUDA.format("cuda:0")}]})
    assert reply.status_code == 200 and len(reply.json()["predictions"]) == 2
    for state, count in (("starting", 0), ("ready", 1), ("failed", 1)):
        assert f'predictor_replicas{{state="{state}"}} {count}.0' in metrics
    assert 'predictor_batch_size_count{device="cpu",replica="0"}' in metrics
    assert 'replica="1"' not in metrics


@pytest.mark.parametrize("env, message", [
    ({"PORT": "http"}, ("error: Setting 'PORT' has value 'http'. Not a valid integer.\n"
                       "hint: set PORT to a whole number between 0 and 65535\n")),
    ({"MODEL_PATH": "/nonexistent/model.pt"},
     ("error: MODEL_PATH=/nonexistent/model.pt: no such file\nhint: point MODEL_PATH at a "
     "TorchScript (.pt) or torch.export (.pt2) file, or unset it for the built-in digits model\n")),
    ({"PREDICTOR": "tests.service.slow_predictor:Nope"},
     ("error: PREDICTOR=tests.service.slow_predictor:Nope: tests.service.slow_predictor has no "
     "class 'Nope'\nhint: name a class defined in that module\n")),
    ({"DEVICE": "cuda:0,gpu"}, (
        "error: Setting 'DEVICE' has value 'cuda:0,gpu'. 'gpu' is not a valid device.\nhint: "
        "use auto, cpu, cuda or cuda:N (N = GPU index, e.g. cuda:0), or a comma-separated list "
        "of them (cuda:0,cuda:2 or cpu,cpu)\n")),
    ({"REPLICAS_PER_DEVICE": "0"}, (
        "error: Setting 'REPLICAS_PER_DEVICE' has value '0'. Out of range.\n"
        "hint: set REPLICAS_PER_DEVICE to auto or a whole number between 1 and 64\n")),
    ({"HOST": "192.0.2.1"}, (  # TEST-NET-1: never an address of this machine
        "error: Setting 'HOST' has value '192.0.2.1'. Cannot listen on it: Cannot assign "
        "requested address.\nhint: set HOST to an address of this machine: 127.0.0.1 (this "
        "machine only), 0.0.0.0 (every IPv4 address) or :: (every IPv6 address)\n")),
    ({"MAX_QUEUE_ROWS": "8", "MAX_REQUEST_ROWS": "9"}, (
        "error: Setting 'MAX_QUEUE_ROWS' has value '8'. Smaller than MAX_REQUEST_ROWS (9): a "
        "request that large never fits.\nhint: set MAX_QUEUE_ROWS to at least "
        "MAX_REQUEST_ROWS, or lower MAX_REQUEST_ROWS to 8\n")),
], ids=["bad-port", "missing-model", "missing-predictor-class", "bad-device-list",
        "zero-replicas", "host-not-here", "queue-smaller-than-request"])
def test_bad_settings_exit_2_with_a_hint(env: dict[str, str], message: str) -> None:
    import os

    proc = subprocess.run([sys.executable, "-m", "service"], check=False, cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stderr) == (2, message)
