"""``--predictor module:Class --code DIR [--requirements FILE]``, pure: the flags checked
together, the requirements read (a torch that would replace the image's refused), the code
layer's files, the generated Dockerfile's layer order and the content-hash tag."""

from __future__ import annotations

from pathlib import Path

import pytest

from launcher._errors import UsageError
from launcher._predictor_image import (
    PredictorSource,
    code_files,
    locked_names,
    predictor_dockerfile,
    predictor_source,
    predictor_tag,
    requirement_names,
)
from tests.conftest import ROOT

HINT_TORCH = ("torch 2.13.0 is in the service image already (requirements.lock): drop the torch "
              "line from --requirements FILE, or its version (a bare 'torch' is satisfied by the "
              "image's)")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "predict.py").write_text("class Predictor: ...\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "model.py").write_text("class M: ...\n")
    return tmp_path


REQUIREMENTS = [
    # file text, names
    ("", []),
    ("# nothing yet\n\n", []),
    ("more-itertools==10.5.0\n", ["more-itertools"]),
    ("Scikit_Learn>=1.4 ; python_version >= '3.10'  # trees\nrequests[socks]\n",
     ["scikit-learn", "requests"]),
    ("--extra-index-url https://example.invalid/simple\nsix\n", ["six"]),
    ("torch\n", ["torch"]),
    ("torch==2.13.0\n", ["torch"]),
]


@pytest.mark.parametrize("text, names", REQUIREMENTS, ids=[str(i) for i in range(len(REQUIREMENTS))])
def test_requirement_names(text: str, names: list[str]) -> None:
    assert requirement_names(text, "req.txt") == names


BAD_REQUIREMENTS = [
    # file text, message, hint
    ("six\ntorch>=2.14\n",
     ('--requirements req.txt, line 2: "torch>=2.14": would replace the service image\'s torch '
     "2.13.0"), HINT_TORCH),
    ("torch==2.12.0+cpu\n",
     ('--requirements req.txt, line 1: "torch==2.12.0+cpu": would replace the service image\'s '
     "torch 2.13.0"), HINT_TORCH),
    ("-r base.txt\n",
     ('--requirements req.txt, line 1: "-r base.txt": only package lines are supported, no '
     "nested files"), "list the packages themselves in --requirements FILE"),
    ("-e .\n",
     ('--requirements req.txt, line 1: "-e .": only package lines are supported, no nested '
     "files"), "list the packages themselves in --requirements FILE"),
    ("./wheels/x.whl\n",
     '--requirements req.txt, line 1: "./wheels/x.whl": not a package requirement',
     "one package per line, e.g. scikit-learn==1.5.2"),
]


@pytest.mark.parametrize("text, message, hint", BAD_REQUIREMENTS,
                         ids=["torch-newer", "torch-older", "nested", "editable", "path"])
def test_bad_requirements_are_refused(text: str, message: str, hint: str) -> None:
    with pytest.raises(UsageError) as caught:
        requirement_names(text, "req.txt")
    assert (caught.value.message, caught.value.hint) == (message, hint)


def test_the_lock_names_what_the_image_has() -> None:
    names = locked_names((ROOT / "requirements.lock").read_text())
    assert {"torch", "fastapi", "prometheus-client", "typing-extensions"} <= names
    assert "more-itertools" not in names


def test_the_flags_checked_together(project: Path) -> None:
    (project / "req.txt").write_text("six\n")
    source = predictor_source("predict:Predictor", ".", "req.txt", str(project))
    assert source == PredictorSource("predict:Predictor", project, project / "req.txt", "six\n")
    assert predictor_source("pkg.model:M", str(project), None, "/") == PredictorSource(
        "pkg.model:M", project)
    assert predictor_source(None, None, None, "/") is None


BAD_FLAGS = [
    # --predictor, --code, --requirements, message, hint
    (None, ".", None, "--code needs --predictor MODULE:CLASS",
     "add --predictor, e.g. --predictor predict:Predictor"),
    (None, None, "req.txt", "--requirements needs --predictor MODULE:CLASS",
     "add --predictor, e.g. --predictor predict:Predictor"),
    ("predict", ".", None, ('invalid argument "predict" for "--predictor" flag: expected '
     "MODULE:CLASS"), "--predictor MODULE:CLASS names a class in a module of --code DIR"),
    ("predict:Predictor", None, None, ("--predictor predict:Predictor needs --code DIR (the "
     "directory with its module)"), ("add --code DIR, the directory with the module (launcher init "
     "DIR writes a starter)")),
    ("predict:Predictor", "nope", None, ('invalid argument "nope" for "--code" flag: not a '
     "directory"), "pass the directory that holds the predictor's module"),
    ("other:Predictor", ".", None, ("--predictor other:Predictor: no other.py (or "
     "other/__init__.py) in --code ."),
     "--predictor MODULE:CLASS names a class in a module of --code DIR"),
    ("predict:Predictor", ".", "missing.txt", ('invalid argument "missing.txt" for '
     '"--requirements" flag: No such file or directory'),
     "pass a pip requirements file: one package per line"),
]


@pytest.mark.parametrize("predictor, code, requirements, message, hint", BAD_FLAGS,
                         ids=["code-alone", "requirements-alone", "no-class", "no-code",
                              "code-not-a-dir", "no-module", "requirements-missing"])
def test_bad_flags_are_usage_errors(project: Path, predictor: str | None, code: str | None,
                                    requirements: str | None, message: str, hint: str) -> None:
    with pytest.raises(UsageError) as caught:
        predictor_source(predictor, code, requirements, str(project))
    assert (caught.value.message, caught.value.hint, caught.value.exit_code) == (
        message, hint, 2)


def test_the_code_layer_leaves_caches_and_ignored_files_out(project: Path) -> None:
    (project / "__pycache__").mkdir()
    (project / "__pycache__" / "predict.cpython-311.pyc").write_bytes(b"")
    (project / ".git").mkdir()
    (project / ".git" / "HEAD").write_text("ref\n")
    (project / "notes.md").write_text("mine\n")
    (project / ".dockerignore").write_text("notes.md\n")
    assert [f.arcname for f in code_files(project)] == [
        "predictor/code/.dockerignore", "predictor/code/pkg/__init__.py",
        "predictor/code/pkg/model.py", "predictor/code/predict.py"]


def test_the_dockerfile_puts_requirements_then_code_then_predictor() -> None:
    lines = [ln for ln in predictor_dockerfile("predict:Predictor").splitlines()
             if ln and not ln.startswith((" ", "#"))]
    assert lines == [
        "ARG SERVICE_IMAGE", "FROM ${SERVICE_IMAGE}", "ARG PIP_NO_INDEX", "ARG PIP_FIND_LINKS",
        "USER 0", "COPY requirements.lock predictor/requirements.txt /tmp/predictor/",
        "COPY predictor/wheels/ /tmp/predictor/wheels/",
        "RUN if grep -Eqv '^[[:space:]]*(#|$)' /tmp/predictor/requirements.txt; then \\",
        "COPY predictor/code/ /code/", "RUN /opt/venv/bin/python -m compileall -q /code",
        "USER 10001:10001", "ENV PYTHONPATH=/code:/app \\"]
    assert predictor_dockerfile("predict:Predictor").endswith("    PREDICTOR=predict:Predictor\n")


def test_the_tag_covers_the_base_the_code_and_the_requirements(project: Path) -> None:
    source = predictor_source("predict:Predictor", ".", None, str(project))
    assert source is not None
    tag = predictor_tag("gpu-launcher/service:cpu-aaa", source, {})
    assert tag.startswith("gpu-launcher/service:predictor-") and len(tag) == len(
        "gpu-launcher/service:predictor-") + 12
    assert predictor_tag("gpu-launcher/service:cpu-aaa", source, {}) == tag
    others = {
        predictor_tag("gpu-launcher/service:cpu-bbb", source, {}),
        predictor_tag("gpu-launcher/service:cpu-aaa",
                      PredictorSource(source.predictor, project, None, "six\n"), {}),
        predictor_tag("gpu-launcher/service:cpu-aaa", source, {"PIP_NO_INDEX": "1"}),
        predictor_tag("gpu-launcher/service:cpu-aaa", source, {}, {"team": "ml"}),
    }
    (project / "predict.py").write_text("class Predictor: pass\n")
    others.add(predictor_tag("gpu-launcher/service:cpu-aaa", source, {}))
    (project / "__pycache__").mkdir()
    (project / "__pycache__" / "x.pyc").write_bytes(b"1")
    assert predictor_tag("gpu-launcher/service:cpu-aaa", source, {}) in others  # caches: same
    assert tag not in others and len(others) == 5
