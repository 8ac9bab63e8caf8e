"""examples/generate served as a user would: ``launcher up --predictor predict:Generator --code
examples/generate --requirements examples/generate/requirements.txt`` on the real engine,
offline (transformers from the wheelhouse), and a completion streamed by the openai client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest
import requests

from launcher._wheelhouse import PythonTarget, fill_wheelhouse
from tests.clihelpers import run_launcher
from tests.conftest import ROOT, free_port, unique
from tests.docker.conftest import BUILD_TIMEOUT, BuiltImage, label_args, remove_predictor_images
from tests.docker.test_own_model import down

pytestmark = [pytest.mark.docker, pytest.mark.slow]
EXAMPLE = ROOT / "examples" / "generate"


def test_up_serves_the_generate_example_offline_and_streams_a_completion(
        docker_client: Any, cpu_image: BuiltImage, standin_target: PythonTarget,
        extras_wheelhouse: Path, image_labels: dict[str, str]) -> None:
    requirements = EXAMPLE / "requirements.txt"
    fill_wheelhouse(extras_wheelhouse, requirements, standin_target,
                    constraints=ROOT / "requirements.lock")
    name, port = unique("glt-generate"), free_port()
    url = f"http://127.0.0.1:{port}"
    try:
        up = run_launcher("up", "--predictor", "predict:Generator", "--code", str(EXAMPLE),
                          "--requirements", str(requirements), "--service-image", cpu_image.tag,
                          "--wheelhouse", str(extras_wheelhouse), "--name", name,
                          "-p", f"127.0.0.1:{port}:8000", "-e", "MODEL_NAME=generate",
                          *label_args(image_labels), timeout=BUILD_TIMEOUT)
        assert up.returncode == 0, up.stderr[-4000:]
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        chunks = [c.choices[0].text for c in client.completions.create(
            model="generate", prompt="Once upon a time", max_tokens=24, stream=True)]
        assert len(chunks) > 10 and chunks[-1] == ""  # token by token, then the finish
        whole = requests.post(url + "/v2/models/generate/generate", timeout=30, json={
            "text_input": "Once upon a time", "parameters": {"max_tokens": 24}})
        assert whole.json()["text_output"] == "".join(chunks)
    finally:
        down(docker_client, name)
        remove_predictor_images(docker_client, image_labels)
