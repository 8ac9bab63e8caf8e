"""Serving your own model, against the real engine: ``up --model FILE`` with the stock image,
``up --predictor module:Class --code DIR --requirements FILE`` with a derived image (built
offline from the wheelhouse), and ``launcher init``'s project served as generated.

The service image is the session's (``cpu_image``: the stand-in base, offline); everything here
carries TEST_LABEL and the session label (so the derived images' content-hash tags are this
session's own) and is removed at the end.
"""

from __future__ import annotations

import json
import resource
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from launcher._flags import parse_publish
from launcher._limits import Ulimit
from launcher._model import check_model_file
from launcher._options import BuildOptions, PlanOptions
from launcher._plan import make_plan
from launcher._up import UpPolicy, up
from launcher._wheelhouse import PythonTarget, fill_wheelhouse
from tests.clihelpers import assert_fails, run_launcher
from tests.conftest import ROOT, TEST_LABEL, free_port, unique
from tests.docker.conftest import (
    BUILD_TIMEOUT,
    BuiltImage,
    label_args,
    remove_predictor_images,
)
from tests.docker.test_lifecycle import cleanup
from tests.service.modelfiles import picker_export, picker_torchscript

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# A tiny pure-Python wheel from PyPI that is not in the service image (requirements.lock).
EXTRA = "more-itertools==10.5.0"

PREDICT_PY = '''\
from more_itertools import ilen


class Positives:
    """Width 4: counts the positive values of each row (with a package the image lacks)."""

    input_width = 4

    def setup(self, device):
        self.info = {"model": "positives", "device": device}

    def predict(self, batch):
        return {"predictions": [ilen(v for v in row if v > 0) for row in batch.tolist()]}
'''


def example_of(stderr: str) -> str:
    """The example ``up`` prints after 'try:'."""
    lines = stderr.splitlines()
    return next(lines[i + 1].strip() for i, line in enumerate(lines) if line.endswith("try:"))


def down(docker_client: Any, name: str) -> None:
    run_launcher("down", "--name", name, "--volumes", "-t", "2", timeout=120)
    cleanup(docker_client, name)


# --- up --model -------------------------------------------------------------------------------


def test_up_model_serves_a_host_file_with_the_stock_image(docker_client: Any,
                                                          cpu_image: BuiltImage,
                                                          tmp_path: Path) -> None:
    model = picker_torchscript(tmp_path / "picker.pt")  # width 3, not the digits' 64
    name, port = unique("glt-model"), free_port()
    try:
        result = run_launcher("up", "--model", str(model), "--name", name, "--tag",
                              cpu_image.tag, "--no-build", "-p", f"127.0.0.1:{port}:8000",
                              *label_args(TEST_LABEL), timeout=BUILD_TIMEOUT)
        assert result.returncode == 0, result.stderr[-4000:]
        url = f"http://127.0.0.1:{port}"
        assert result.stdout == url + "\n"
        assert f"launcher: image {cpu_image.tag} is present" in result.stderr  # no rebuild
        assert "building" not in result.stderr

        data = docker_client.api.inspect_container(name)
        mount = next(m for m in data["Mounts"] if m["Destination"] == "/model/picker.pt")
        assert (mount["Type"], mount["Source"], mount["RW"]) == ("bind", str(model), False)
        assert "MODEL_PATH=/model/picker.pt" in data["Config"]["Env"]

        answer = requests.post(url + "/predict", json={"inputs": [[2, 1, 0], [0, 5, 1]]},
                               timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == [0, 1]
        assert requests.get(url + "/", timeout=5).json()["input_width"] == 3

        example = example_of(result.stderr)
        assert example == f"curl -s {url}/predict -d '{{\"inputs\":[[0,0,0]]}}'"
        ran = subprocess.run(["bash", "-c", example], capture_output=True, text=True,
                             timeout=30, check=False)
        assert ran.returncode == 0, ran.stderr
        assert json.loads(ran.stdout)["predictions"] == [0]
    finally:
        down(docker_client, name)


def test_up_model_with_a_missing_file_exits_2_before_the_engine(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pt2"
    # An engine that does not exist: the answer comes before any call to it.
    result = run_launcher("up", "--model", str(missing), "--name", unique("glt-model"),
                          env={"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"})
    assert_fails(result, 2, [
        f'launcher: error: invalid argument "{missing}" for "--model" flag: no such file',
        ("hint: pass a TorchScript (.pt, torch.jit.save) or torch.export (.pt2, "
        "torch.export.save) file: --model PATH"),
    ])


def test_on_a_remote_engine_the_model_is_copied_into_the_models_volume(
        docker_client: Any, cpu_image: BuiltImage, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    # The remote path of up, run in process against this engine: nothing mounted from the
    # host; the file lands in NAME-models and MODEL_PATH points there.
    model = check_model_file(str(picker_export(tmp_path / "picker.pt2")), "/", in_volume=True)
    name, port = unique("glt-model"), free_port()
    # A remote engine's memlock limit is not learned from this shell: name one it allows.
    memlock = resource.getrlimit(resource.RLIMIT_MEMLOCK)[1]
    ulimits = () if memlock == resource.RLIM_INFINITY else (Ulimit("memlock", memlock, memlock),)
    options = PlanOptions(name=name, labels=dict(TEST_LABEL), model=model,
                          publish=tuple(parse_publish(f"127.0.0.1:{port}:8000")),
                          ulimits=ulimits, build=BuildOptions(tag=cpu_image.tag))
    try:
        assert up(make_plan(options, None), options, UpPolicy(no_build=True, remote=True)) == 0
        err = capsys.readouterr().err
        assert f"copied {model.path} into {name}-models as /models/picker.pt2" in err
        data = docker_client.api.inspect_container(name)
        assert all(m["Type"] == "volume" for m in data["Mounts"])
        assert "MODEL_PATH=/models/picker.pt2" in data["Config"]["Env"]
        answer = requests.post(f"http://127.0.0.1:{port}/predict",
                               json={"inputs": [[2, 1, 0], [0, 5, 1]]}, timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == [0, 1]
        helpers = docker_client.containers.list(
            all=True, filters={"label": "org.gpu-launcher.managed=model-copy"})
        assert [c for c in helpers if c.labels.get("org.gpu-launcher.test") == "1"
                and c.attrs["Mounts"] and c.attrs["Mounts"][0].get("Name") == f"{name}-models"
                ] == []
    finally:
        down(docker_client, name)


# --- up --predictor --code --requirements -------------------------------------------------------


@dataclass
class Project:
    code: Path
    requirements: Path
    name: str
    url: str
    args: tuple[str, ...]  # up's arguments, to run it again
    first_up: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def extra_wheelhouse(standin_target: PythonTarget, extras_wheelhouse: Path,
                     tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The extras wheelhouse, holding EXTRA's wheel too (downloaded once from PyPI)."""
    requirements = tmp_path_factory.mktemp("extra") / "requirements.txt"
    requirements.write_text(EXTRA + "\n")
    fill_wheelhouse(extras_wheelhouse, requirements, standin_target,
                    constraints=ROOT / "requirements.lock")
    return extras_wheelhouse


@pytest.fixture(scope="module")
def project(docker_client: Any, cpu_image: BuiltImage, extra_wheelhouse: Path,
            image_labels: dict[str, str], tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Project]:
    root = tmp_path_factory.mktemp("project")
    code = root / "code"
    code.mkdir()
    (code / "positives.py").write_text(PREDICT_PY)
    requirements = root / "requirements.txt"
    requirements.write_text(f"# what positives.py needs beyond the image\n{EXTRA}\n")
    name, port = unique("glt-pred"), free_port()
    args = ("--predictor", "positives:Positives", "--code", str(code), "--requirements",
            str(requirements), "--service-image", cpu_image.tag, "--wheelhouse",
            str(extra_wheelhouse), "--name", name, "-p", f"127.0.0.1:{port}:8000",
            *label_args(image_labels))
    try:
        first = run_launcher("up", *args, timeout=BUILD_TIMEOUT)
        assert first.returncode == 0, first.stderr[-4000:]
        yield Project(code, requirements, name, f"http://127.0.0.1:{port}", args, first)
    finally:
        down(docker_client, name)
        remove_predictor_images(docker_client, image_labels)


def test_up_predictor_builds_from_the_service_image_and_answers(project: Project) -> None:
    first = project.first_up
    assert "launcher: building gpu-launcher/service:predictor-" in first.stderr
    assert "launcher: predictor: 1 wheel(s) for" in first.stderr  # only EXTRA, not the image's
    answer = requests.post(project.url + "/predict",
                           json={"inputs": [[1, -2, 3, 0], [-1, -1, -1, -1]]}, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"predictions": [2, 0]}
    example = example_of(first.stderr)
    assert example == f"curl -s {project.url}/predict -d '{{\"inputs\":[[0,0,0,0]]}}'"


def test_up_again_with_an_unchanged_project_does_not_build(docker_client: Any,
                                                           project: Project) -> None:
    before = docker_client.api.inspect_container(project.name)["Id"]
    again = run_launcher("up", *project.args, timeout=BUILD_TIMEOUT)
    assert again.returncode == 0, again.stderr
    assert "building" not in again.stderr
    assert "(same predictor, code and requirements)" in again.stderr
    assert f"{project.name}: already running with the same plan; left alone" in again.stderr
    assert docker_client.api.inspect_container(project.name)["Id"] == before


def test_a_code_edit_rebuilds_only_the_code_layer(docker_client: Any, project: Project,
                                                  cpu_image: BuiltImage,
                                                  extra_wheelhouse: Path,
                                                  image_labels: dict[str, str]) -> None:
    build_args = ["build", "--json", *project.args[:8], "--wheelhouse", str(extra_wheelhouse),
                  *label_args(image_labels)]
    unchanged = run_launcher(*build_args, timeout=BUILD_TIMEOUT)
    assert unchanged.returncode == 0, unchanged.stderr
    assert json.loads(unchanged.stdout)["built"] is False
    (project.code / "positives.py").write_text(PREDICT_PY.replace("v > 0", "v >= 0"))
    edited = run_launcher(*build_args, timeout=BUILD_TIMEOUT)
    assert edited.returncode == 0, edited.stderr
    result = json.loads(edited.stdout)
    assert result["built"] is True and result["tag"] != json.loads(unchanged.stdout)["tag"]
    steps = result["steps"]
    code_step = next(i for i, s in enumerate(steps)
                     if s["instruction"].startswith("COPY predictor/code/"))
    start = next(i for i, s in enumerate(steps) if s["instruction"].startswith("FROM")) + 1
    # Every layer before the code's came from the cache (ARG and FROM before make none).
    assert [s["instruction"] for s in steps[start:code_step] if not s["cached"]] == []
    assert any(s["instruction"].startswith("RUN if grep") and s["cached"]
               for s in steps[:code_step])  # the requirements layer came from the cache
    assert not steps[code_step]["cached"]
    served = run_launcher("up", *project.args, timeout=BUILD_TIMEOUT)
    assert served.returncode == 0, served.stderr
    assert f"{project.name}: replacing it" in served.stderr
    answer = requests.post(project.url + "/predict", json={"inputs": [[0, 0, 1, -1]]},
                           timeout=10)
    assert answer.json() == {"predictions": [3]}


def test_a_requirement_that_replaces_torch_is_refused_before_the_engine(tmp_path: Path) -> None:
    (tmp_path / "positives.py").write_text(PREDICT_PY)
    (tmp_path / "requirements.txt").write_text("torch>=2.14\n")
    result = run_launcher("up", "--predictor", "positives:Positives", "--code", str(tmp_path),
                          "--requirements", str(tmp_path / "requirements.txt"),
                          env={"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"})
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines()[-2] == (
        f'launcher: error: --requirements {tmp_path}/requirements.txt, line 1: "torch>=2.14": '
        "would replace the service image's torch 2.13.0")


# --- launcher init → up → /predict --------------------------------------------------------------


def test_launcher_init_output_serves_as_generated(docker_client: Any, cpu_image: BuiltImage,
                                                  wheelhouse: Path, image_labels: dict[str, str],
                                                  tmp_path: Path) -> None:
    target = tmp_path / "my-model"
    made = run_launcher("init", str(target), timeout=60)
    assert made.returncode == 0, made.stderr
    assert made.stderr.splitlines()[-1].strip() == f"cd {target} && launcher up"
    name, port = unique("glt-init"), free_port()
    try:
        # Its launcher.toml says the predictor, the code and the requirements.
        result = run_launcher("up", "--service-image", cpu_image.tag,
                              "--wheelhouse", str(wheelhouse), "--name", name, "-p",
                              f"127.0.0.1:{port}:8000", *label_args(image_labels),
                              timeout=BUILD_TIMEOUT, cwd=target)
        assert result.returncode == 0, result.stderr[-4000:]
        example = example_of(result.stderr)
        ran = subprocess.run(["bash", "-c", example], capture_output=True, text=True,
                             timeout=30, check=False)
        assert ran.returncode == 0, ran.stderr
        assert set(json.loads(ran.stdout)) == {"predictions", "scores"}
        answer = requests.post(f"http://127.0.0.1:{port}/predict",
                               json={"inputs": [[0.5, 2.0, 1.0]]}, timeout=10)
        assert answer.json() == {"predictions": [1], "scores": [[0.5, 2.0, 1.0]]}
    finally:
        down(docker_client, name)
