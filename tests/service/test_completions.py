"""``POST /v1/completions`` against a real process, read by the real ``openai`` client: the Ticker
(tests/service/stream_predictor.py) echoes a prompt's words, one chunk each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest
import requests

from tests.conftest import ServerProcess
from tests.service.test_streaming import metric, wait_for

pytestmark = pytest.mark.slow


def client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def test_the_openai_client_streams_a_completion_chunk_by_chunk(
        ticker: tuple[ServerProcess, Path]) -> None:
    server, _ = ticker
    chunks = list(client(server).completions.create(
        model="ticker", prompt="the quick brown fox jumps", max_tokens=3, stream=True,
        stream_options={"include_usage": True}))
    assert [c.choices[0].text for c in chunks if c.choices] == ["the", " quick", " brown", ""]
    assert [c.choices[0].finish_reason for c in chunks if c.choices] == [
        None, None, None, "length"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    assert {c.object for c in chunks} == {"text_completion"}
    assert len({c.id for c in chunks}) == 1


def test_the_openai_client_gets_a_whole_completion(ticker: tuple[ServerProcess, Path]) -> None:
    server, _ = ticker
    completion = client(server).completions.create(model="ticker", prompt="one two three STOP four",
                                                   stop="STOP")
    assert completion.choices[0].text == "one two three"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens,
            completion.usage.total_tokens) == (1, 3, 4)  # the Ticker has no cost(): 1


@pytest.mark.parametrize("prompt, message", [
    ("fine <fail> never", "inference failed: RuntimeError: ticker failed at word 1"),
    ("fine <dict> never", ("inference failed: TypeError: a completion's chunks must be text: "
                           "the predictor yielded an object")),
], ids=["predictor-raises", "chunk-not-text"])
def test_an_error_mid_stream_is_raised_by_the_openai_client_and_is_no_cancel(
        ticker: tuple[ServerProcess, Path], prompt: str, message: str) -> None:
    server, _ = ticker
    cancelled = metric(server, "predictor_streams_cancelled_total")
    stream = client(server).completions.create(model="ticker", prompt=prompt, stream=True)
    texts = []
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            texts.append(chunk.choices[0].text)
    assert (texts, info.value.message) == (["fine"], message)
    assert wait_for(lambda: metric(server, "predictor_in_flight_streams") == 0)
    assert metric(server, "predictor_streams_cancelled_total") == cancelled


@pytest.mark.parametrize("body, status, message", [
    ({"model": "m"}, 400, "'prompt' must be a string, got null"),
    ({"model": "m", "prompt": ["a", "b"]}, 400,
     "'prompt' has 2 prompts: this server completes one per request"),
    ({"model": "m", "prompt": "a", "max_tokens": 0}, 400,
     "'max_tokens' must be a whole number of at least 1, got 0"),
    ({"model": "m", "prompt": "a", "max_tokens": "9"}, 400,
     "'max_tokens' must be a whole number of at least 1, got \"9\""),
    ({"model": "m", "prompt": "a", "temperature": 3}, 400,
     "'temperature' must be a number from 0 to 2, got 3"),
    ({"model": "m", "prompt": "a", "stop": [1]}, 400,
     "'stop' must be a string or a list of strings, got a list"),
    ({"model": "m", "prompt": "a", "n": 2}, 400,
     "'n' must be 1: this server makes one completion per request, got 2"),
    ({"model": "m", "prompt": "a", "stream": "yes"}, 400,
     "'stream' must be true or false, got a string"),
    ({"model": "m", "prompt": "<fail>"}, 500,
     "inference failed: RuntimeError: ticker failed at word 0"),
], ids=["no-prompt", "two-prompts", "max-tokens-zero", "max-tokens-string", "temperature-3",
        "stop-number", "n-2", "stream-string", "error-before-first-chunk"])
def test_a_bad_request_gets_openais_error_object(ticker: tuple[ServerProcess, Path],
                                                 body: dict[str, Any], status: int,
                                                 message: str) -> None:
    server, _ = ticker
    response = requests.post(server.url + "/v1/completions", json=body, timeout=10)
    assert (response.status_code, response.json()) == (status, {"error": {
        "message": message, "type": "invalid_request_error" if status < 500 else "server_error",
        "param": None, "code": None}})
