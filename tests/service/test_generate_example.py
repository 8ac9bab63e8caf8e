"""examples/generate (a byte-level GPT-2, transformers) served by a real process: what it
streams over /v1/completions (the openai client), /v2 generate_stream (curl -N) and /predict is
exactly what transformers' own greedy ``generate`` makes of the same prompt."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import openai
import orjson
import pytest
import requests

from tests.conftest import ROOT, ServerProcess, start_server, tool_path

pytestmark = pytest.mark.slow
EXAMPLE = ROOT / "examples" / "generate"
PROMPT = "Once upon a time"


@pytest.fixture(scope="module")
def generator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server(tmp_path_factory.mktemp("generate"), env={
        "PREDICTOR": "predict:Generator", "PYTHONPATH": str(EXAMPLE), "DEVICE": "cpu",
        "MODEL_NAME": "generate", "REPLICAS_PER_DEVICE": "2"})  # two load at once
    yield server
    server.stop()


def reference(prompt: str, max_tokens: int) -> str:
    """transformers' greedy generate, in this process, with the shipped weights."""
    import torch
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(EXAMPLE / "model", dtype=torch.float32).eval()
    ids = torch.tensor([list(prompt.encode())])
    out = model.generate(ids, max_new_tokens=max_tokens, do_sample=False, eos_token_id=256,
                         pad_token_id=256)
    return bytes(t for t in out[0, ids.shape[1]:].tolist() if t < 256).decode()


def test_the_openai_client_streams_what_transformers_generates(
        generator: ServerProcess) -> None:
    client = openai.OpenAI(base_url=generator.url + "/v1", api_key="unused", max_retries=0)
    chunks = list(client.completions.create(model="generate", prompt=PROMPT, max_tokens=40,
                                            stream=True, stream_options={"include_usage": True}))
    texts = [c.choices[0].text for c in chunks if c.choices]
    assert len(texts) > 20  # token by token, not in one piece
    assert "".join(texts) == reference(PROMPT, 40)
    assert chunks[-2].choices[0].finish_reason == "length"
    usage = chunks[-1].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (len(PROMPT.encode()), 40)


def test_curl_reads_generate_stream_and_predict_answers_the_same_text(
        generator: ServerProcess) -> None:
    curl = tool_path("curl", "apt-get install curl")
    out = subprocess.run([curl, "-sN", "-H", "Content-Type: application/json", "-d",
                          orjson.dumps({"text_input": PROMPT, "parameters": {"max_tokens": 24}}),
                          generator.url + "/v2/models/generate/generate_stream"],
                         capture_output=True, timeout=60, check=True).stdout
    events = [orjson.loads(line[6:]) for line in out.split(b"\n\n") if line]
    expected = reference(PROMPT, 24)
    assert "".join(e["text_output"] for e in events) == expected
    plain = requests.post(generator.url + "/predict", timeout=30,
                          json={"prompt": PROMPT, "max_tokens": 24})
    assert (plain.status_code, plain.json()) == (200, {"outputs": [expected]})


def test_stop_and_temperature_are_honoured(generator: ServerProcess) -> None:
    greedy = reference(PROMPT, 60)
    stop = greedy.split()[2]  # a word that comes up: the text ends before it
    client = openai.OpenAI(base_url=generator.url + "/v1", api_key="unused", max_retries=0)
    cut = client.completions.create(model="generate", prompt=PROMPT, max_tokens=60, stop=stop)
    assert cut.choices[0].text == greedy[:greedy.index(stop)]
    assert cut.choices[0].finish_reason == "stop"
    hot = [client.completions.create(model="generate", prompt=PROMPT, max_tokens=60,
                                     temperature=2.0).choices[0].text for _ in range(2)]
    assert greedy not in hot  # sampled at temperature 2, 60 bytes: never the greedy text
