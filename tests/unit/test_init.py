"""``launcher init DIR``: the starter's files, never replacing one, and a predictor that the
service serves as generated (in process; tests/docker/test_own_model.py serves it in a
container)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import tomllib
from prometheus_client import CollectorRegistry

from launcher._cli import main
from launcher._starter import OBJECT_EXAMPLE, STARTER_EXAMPLE, up_command
from service._app import create_app
from service._predictor import load_predictor_class
from service._settings import Settings
from tests.conftest import ROOT
from tests.service.asgi import request, running, wait_ready

FILES = ["README.md", "launcher.toml", "predict.py", "requirements.txt"]


def test_init_writes_the_starter_and_names_the_up_line(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "my-model"
    assert main(["init", str(target)]) == 0
    out, err = capsys.readouterr()
    assert sorted(p.name for p in target.iterdir()) == FILES
    assert out.splitlines() == [str(target / n) for n in ("predict.py", "requirements.txt",
                                                           "launcher.toml", "README.md")]
    assert err.splitlines()[-1] == f"  cd {target} && launcher up"
    readme = (target / "README.md").read_text()
    assert readme.startswith("# my-model\n")
    assert "\n    launcher up\n" in readme
    assert STARTER_EXAMPLE in readme


def test_the_starter_launcher_toml_is_the_up_flags_that_serve_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", str(tmp_path / "p")]) == 0
    text = (tmp_path / "p" / "launcher.toml").read_text()
    assert tomllib.loads(text) == {"predictor": "predict:Predictor", "code": ".",
                                   "requirements": "requirements.txt"}
    # Its commented examples, uncommented, are keys up takes with values their flags take.
    head, _, examples = text.partition("\n\n")
    uncommented = "\n".join(line.removeprefix("#").strip() for line in examples.splitlines())
    (tmp_path / "p" / "launcher.toml").write_text(head + "\n" + uncommented)
    assert set(tomllib.loads(uncommented)) == {"name", "gpus", "publish", "memory",
                                               "wheelhouse", "env"}
    monkeypatch.chdir(tmp_path / "p")
    capsys.readouterr()
    assert main(["up", "--dry-run", "--json", "--no-probe"]) == 0, capsys.readouterr().err
    settings = orjson.loads(capsys.readouterr().out)["settings"]
    assert settings == {key: str(tmp_path / "p" / "launcher.toml") for key in [
        "code", "env", "gpus", "memory", "name", "predictor", "publish", "requirements",
        "wheelhouse"]} | {"no-probe": "flag"}


@pytest.mark.parametrize("code, line", [(".", "launcher up"), ("my model", "cd 'my model' && launcher up")],
                         ids=["here", "quoted"])
def test_up_command_is_launcher_up_in_the_project(code: str, line: str) -> None:
    assert up_command(code) == line


@pytest.mark.parametrize("present", FILES, ids=FILES)
def test_init_refuses_to_replace_a_file(tmp_path: Path, present: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / present).write_text("mine\n")
    assert main(["init", str(tmp_path)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"launcher: error: launcher init {tmp_path}: {present} already there; nothing written",
        "hint: pick a new directory (launcher init DIR), or move those files away",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == [present]
    assert (tmp_path / present).read_text() == "mine\n"


def test_init_into_a_file_is_a_usage_error(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "f").write_text("")
    assert main(["init", str(tmp_path / "f")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"launcher: error: launcher init {tmp_path / 'f'}: not a directory",
        "hint: pass a new or empty directory: launcher init DIR",
    ]


@pytest.mark.parametrize("kind", ["tensor", "object"])
def test_the_starter_predictor_is_clean_code(tmp_path: Path, kind: str) -> None:
    assert main(["init", str(tmp_path), "--kind", kind]) == 0
    linted = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache",
                             str(tmp_path / "predict.py")], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, check=False)
    assert linted.returncode == 0, linted.stdout


@pytest.fixture
def starter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The generated (tensor) predict.py's Predictor, as the service loads it."""
    assert main(["init", str(tmp_path)]) == 0
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "predict", raising=False)
    return load_predictor_class("predict:Predictor")


@pytest.mark.parametrize("kind, example, answer", [
    ("tensor", STARTER_EXAMPLE, {"predictions": [1], "scores": [[0.5, 2.0, 1.0]]}),
    ("object", OBJECT_EXAMPLE, {"outputs": [{"question": True, "words": 4},
                                            {"question": False, "words": 2}]}),
], ids=["tensor", "object"])
def test_the_starter_predictor_serves_as_generated(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch, kind: str,
                                                   example: str, answer: object) -> None:
    assert main(["init", str(tmp_path), "--kind", kind]) == 0
    assert example in (tmp_path / "README.md").read_text()
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "predict", raising=False)
    predictor = load_predictor_class("predict:Predictor")
    app = create_app(predictor, Settings(devices=("cpu",)), CollectorRegistry(), nvml_loader=None)

    async def scenario() -> tuple[int, object]:
        async with running(app):
            assert (await wait_ready(app)).status == 200
            reply = await request(app, "POST", "/predict", example.encode())
            return reply.status, orjson.loads(reply.body)

    status, body = asyncio.run(scenario())
    assert (status, body) == (200, answer)


def test_the_starter_setup_says_what_it_gets_and_gets_it(starter: Any) -> None:
    doc = " ".join((type(starter).setup.__doc__ or "").split())
    assert '`device` is this replica\'s device, "cpu" or "cuda:N"' in doc
    app = create_app(starter, Settings(devices=("auto",)), CollectorRegistry(), nvml_loader=None)

    async def scenario() -> object:
        async with running(app):
            assert (await wait_ready(app)).status == 200
            return orjson.loads((await request(app, "GET", "/")).body)

    about = asyncio.run(scenario())
    assert isinstance(about, dict)
    assert about["model"]["device"] == "cpu"  # DEVICE=auto, resolved: never "auto" itself
