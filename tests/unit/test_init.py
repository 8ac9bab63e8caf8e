"""``launcher init DIR``: the starter's files, never replacing one, and a predictor that the
service serves as generated (in process; tests/docker/test_own_model.py serves it in a
container)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry

from launcher._cli import main
from launcher._starter import OBJECT_EXAMPLE, STARTER_EXAMPLE, up_command
from service._app import create_app
from service._predictor import load_predictor_class
from service._settings import Settings
from tests.conftest import ROOT
from tests.service.asgi import request, running, wait_ready

FILES = ["README.md", "predict.py", "requirements.txt"]


def test_init_writes_the_starter_and_names_the_up_line(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "my-model"
    assert main(["init", str(target)]) == 0
    out, err = capsys.readouterr()
    assert sorted(p.name for p in target.iterdir()) == FILES
    assert out.splitlines() == [str(target / n) for n in ("predict.py", "requirements.txt",
                                                           "README.md")]
    assert err.splitlines()[-1] == f"  {up_command(str(target))}"
    readme = (target / "README.md").read_text()
    assert readme.startswith("# my-model\n")
    assert ("    launcher up --predictor predict:Predictor --code . --requirements "
            "./requirements.txt\n") in readme
    assert STARTER_EXAMPLE in readme


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
