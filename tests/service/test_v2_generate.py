"""Triton's generate extension against a real process: ``/v2/models/{name}/generate`` and
``generate_stream`` over the Ticker (it echoes a prompt's words, one chunk each), read by
``curl -N``; a predictor without ``stream`` (the digits server) answers 406."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import ServerProcess, tool_path

pytestmark = pytest.mark.slow
HEAD = {"model_name": "ticker", "model_version": "1"}


def test_generate_answers_the_whole_text(ticker: tuple[ServerProcess, Path]) -> None:
    server, _ = ticker
    response = requests.post(server.url + "/v2/models/ticker/generate", timeout=10, json={
        "text_input": "a b c d e", "parameters": {"max_tokens": 4, "stop": ["d"]}})
    assert (response.status_code, response.json()) == (200, {**HEAD, "text_output": "a b c"})


def test_curl_reads_generate_stream_as_one_event_per_chunk(
        ticker: tuple[ServerProcess, Path]) -> None:
    server, _ = ticker
    curl = tool_path("curl", "apt-get install curl")
    out = subprocess.run([curl, "-sN", "-d", '{"text_input": "one two three", "max_tokens": 2}',
                          "-H", "Content-Type: application/json",
                          server.url + "/v2/models/ticker/versions/1/generate_stream"],
                         capture_output=True, timeout=30, check=True)
    assert out.stdout == (
        b'data: {"model_name":"ticker","model_version":"1","text_output":"one"}\n\n'
        b'data: {"model_name":"ticker","model_version":"1","text_output":" two"}\n\n')


def test_an_error_mid_generate_stream_is_an_error_event(
        ticker: tuple[ServerProcess, Path]) -> None:
    server, _ = ticker
    response = requests.post(server.url + "/v2/models/ticker/generate_stream", timeout=10,
                             json={"text_input": "fine <fail>"})
    assert response.status_code == 200
    assert response.content == (
        b'data: {"model_name":"ticker","model_version":"1","text_output":"fine"}\n\n'
        b'event: error\ndata: {"error":"inference failed: RuntimeError: ticker failed at '
        b'word 1"}\n\n')


@pytest.mark.parametrize("path, body, status, error", [
    ("/v2/models/ticker/generate", {"text": "a"}, 400, "'text_input' must be a string, got null"),
    ("/v2/models/ticker/generate", {"text_input": "a", "parameters": {"max_tokens": -1}}, 400,
     "'max_tokens' must be a whole number of at least 1, got -1"),
    ("/v2/models/ticker/generate", {"text_input": "a", "temperature": "hot"}, 400,
     "'temperature' must be a number from 0 to 100, got \"hot\""),
    ("/v2/models/ticker/generate_stream", {"text_input": "a", "parameters": []}, 400,
     "'parameters' must be an object, got a list"),
    ("/v2/models/other/generate", {"text_input": "a"}, 404,
     "unknown model 'other': this server serves 'ticker'"),
    ("/v2/models/ticker/generate_stream", {"text_input": "<fail>"}, 500,
     "inference failed: RuntimeError: ticker failed at word 0"),
], ids=["no-text-input", "max-tokens-negative", "temperature-string", "parameters-list",
        "unknown-model", "error-before-first-chunk"])
def test_a_bad_generate_request_gets_a_plain_error(ticker: tuple[ServerProcess, Path], path: str,
                                                   body: dict[str, Any], status: int,
                                                   error: str) -> None:
    server, _ = ticker
    response = requests.post(server.url + path, json=body, timeout=10)
    assert (response.status_code, response.json()) == (status, {"error": error})


NO_STREAM = "this model does not stream: its predictor has no stream() method"


@pytest.mark.parametrize("path, body, headers, answer", [
    ("/predict", {"inputs": [[0.0] * 64]}, {"Accept": "text/event-stream"},
     {"detail": NO_STREAM + "; send the request without Accept: text/event-stream"}),
    ("/v2/models/digits/generate_stream", {"text_input": "a"}, {}, {"error": NO_STREAM}),
    ("/v1/completions", {"model": "digits", "prompt": "a"}, {}, {"error": {
        "message": NO_STREAM, "type": "invalid_request_error", "param": None, "code": None}}),
], ids=["predict-sse", "v2-generate-stream", "v1-completions"])
def test_a_model_without_stream_answers_406(server: ServerProcess, path: str, body: Any,
                                            headers: dict[str, str], answer: Any) -> None:
    response = requests.post(server.url + path, json=body, headers=headers, timeout=10)
    assert (response.status_code, response.json()) == (406, answer)
