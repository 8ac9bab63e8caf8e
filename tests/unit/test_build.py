"""The build context, the content-hash tag and the build-output parser, without an engine."""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path

import pytest

from launcher._build import (
    BuildStep,
    context_files,
    image_tag,
    is_ignored,
    parse_build_output,
    parse_dockerignore,
    parse_image_ref,
    write_context_tar,
)
from tests.conftest import error_text

IGNORE = """
# comments and blank lines do not count
.git
**/__pycache__
*.pyc
tests/
/.venv
docs/*.md
!docs/keep.md
wheelhouse/*.tmp
"""


@pytest.mark.parametrize(
    ("path", "ignored"),
    [
        (".git/config", True),
        ("service/__pycache__/app.cpython-311.pyc", True),
        ("__pycache__/x.py", True),
        ("top.pyc", True),
        ("service/deep.pyc", False),  # `*` stops at `/`, as in Docker
        ("tests/unit/test_x.py", True),
        ("tests", True),
        (".venv/bin/python", True),
        ("docs/guide.md", True),
        ("docs/keep.md", False),
        ("docs/sub/guide.md", False),
        ("service/app.py", False),
        ("wheelhouse/torch.whl", False),
        ("wheelhouse/x.tmp", True),
        ("Dockerfile", False),
    ],
    ids=lambda v: str(v),
)
def test_is_ignored_follows_dockerignore_rules(path: str, ignored: bool) -> None:
    assert is_ignored(path, parse_dockerignore(IGNORE)) is ignored


@pytest.mark.parametrize(
    ("line", "pattern", "exclusion"),
    [
        ("/abs/path", "abs/path", False),
        ("./dir//x/", "dir/x", False),
        ("!  keep.txt", "keep.txt", True),
        ("a/../b", "b", False),
        ("  spaced  ", "spaced", False),
    ],
    ids=["leading-slash", "cleaned", "exclusion", "dotdot", "trimmed"],
)
def test_parse_dockerignore_cleans_patterns(line: str, pattern: str, exclusion: bool) -> None:
    (p,) = parse_dockerignore(line)
    assert (p.pattern, p.exclusion) == (pattern, exclusion)


@pytest.mark.parametrize(
    ("pattern", "path", "ignored"),
    [
        ("**/*.log", "a/b/c.log", True),
        ("**/*.log", "c.log", True),
        ("a/**", "a/b/c", True),
        ("file?.txt", "file1.txt", True),
        ("file?.txt", "file10.txt", False),
        ("[ab].txt", "a.txt", True),
        ("[^ab].txt", "a.txt", False),
        ("[^ab].txt", "c.txt", True),
        ("\\*.txt", "*.txt", True),
        ("\\*.txt", "x.txt", False),
    ],
    ids=lambda v: str(v),
)
def test_pattern_syntax(pattern: str, path: str, ignored: bool) -> None:
    assert is_ignored(path, parse_dockerignore(pattern)) is ignored


def make_root(tmp_path: Path) -> Path:
    root = tmp_path / "ctx"
    for rel, text in {
        "Dockerfile": "FROM base\n",
        "Dockerfile.gpu": "FROM cuda\n",
        ".dockerignore": "tests\n.git\nDockerfile\nwheelhouse/*\n!wheelhouse/README.md\n",
        "requirements.lock": "torch==2.13.0\n",
        "service/app.py": "print('v1')\n",
        "tests/test_app.py": "assert True\n",
        ".git/HEAD": "ref: main\n",
        "wheelhouse/README.md": "wheels go here\n",
        "wheelhouse/stale.whl": "old",
    }.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_context_files_apply_dockerignore_but_keep_the_dockerfile(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    names = [f.arcname for f in context_files(root, "Dockerfile")]
    assert names == [
        ".dockerignore", "Dockerfile", "Dockerfile.gpu", "requirements.lock", "service/app.py",
        "wheelhouse/README.md",
    ]


def test_context_files_add_the_host_wheelhouse(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "torch-2.13.0-cp311-none-any.whl").write_text("w")
    (wheels / "notes.txt").write_text("not a wheel")
    names = [f.arcname for f in context_files(root, "Dockerfile.gpu", wheels)]
    assert "wheelhouse/torch-2.13.0-cp311-none-any.whl" in names
    assert "wheelhouse/notes.txt" not in names


TAG = re.compile(r"gpu-launcher/service:(cpu|gpu)-[0-9a-f]{12}")


def test_image_tag_is_stable_and_names_the_variant(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    cpu = image_tag(root, "Dockerfile", {"A": "1"})
    assert TAG.fullmatch(cpu) and cpu.split(":")[1].startswith("cpu-")
    assert image_tag(root, "Dockerfile", {"A": "1"}) == cpu
    assert image_tag(root, "Dockerfile.gpu", {"A": "1"}).split(":")[1].startswith("gpu-")


@pytest.mark.parametrize(
    ("edit", "changes"),
    [
        ("service/app.py", True),
        ("requirements.lock", True),
        ("Dockerfile", True),
        ("tests/test_app.py", False),
        (".git/HEAD", False),
        ("wheelhouse/stale.whl", False),
    ],
    ids=lambda v: str(v),
)
def test_image_tag_follows_exactly_the_files_the_context_sends(
    tmp_path: Path, edit: str, changes: bool
) -> None:
    root = make_root(tmp_path)
    before = image_tag(root, "Dockerfile", {})
    path = root / edit
    path.write_text(path.read_text() + "# edited\n")
    assert (image_tag(root, "Dockerfile", {}) != before) is changes


@pytest.mark.parametrize(
    ("args_a", "args_b", "same"),
    [
        ({"A": "1", "B": "2"}, {"B": "2", "A": "1"}, True),
        ({"A": "1"}, {"A": "2"}, False),
        ({}, {"PIP_NO_INDEX": "1"}, False),
    ],
    ids=["order-free", "value", "new-arg"],
)
def test_image_tag_hashes_build_args(
    tmp_path: Path, args_a: dict[str, str], args_b: dict[str, str], same: bool
) -> None:
    root = make_root(tmp_path)
    assert (image_tag(root, "Dockerfile", args_a) == image_tag(root, "Dockerfile", args_b)) is same


def test_image_tag_covers_the_host_wheelhouse(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    without = image_tag(root, "Dockerfile", {}, wheelhouse=wheels)
    (wheels / "dumb_init-1.2.5-py3-none-any.whl").write_text("w")
    assert image_tag(root, "Dockerfile", {}, wheelhouse=wheels) != without


def test_context_tar_is_deterministic(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o700)
    blobs = []
    for _ in range(2):
        buf = io.BytesIO()
        write_context_tar(context_files(root, "Dockerfile"), buf)
        blobs.append(buf.getvalue())
        (root / "service/app.py").touch()
    assert blobs[0] == blobs[1]
    with tarfile.open(fileobj=io.BytesIO(blobs[0])) as tar:
        modes = {m.name: (m.mode, m.uid, m.mtime) for m in tar.getmembers()}
    assert modes["run.sh"] == (0o755, 0, 0)
    assert modes["service/app.py"] == (0o644, 0, 0)


BUILD_OUTPUT = [
    "Step 1/4 : ARG BASE_IMAGE=python:3.11-slim\n",
    "Step 2/4 : FROM $BASE_IMAGE AS build\n ---> c4ec939e9d63\n",
    "Step 3/4 : COPY requirements.lock /tmp/\n",
    " ---> Using cache\n ---> 0a1b2c3d\n",
    "Step 4/4 : COPY service/ /app/service/\n ---> Running in 5f\n ---> 9e8d\n",
    "Successfully built 9e8d\n",
]


def test_parse_build_output_marks_cached_steps() -> None:
    assert parse_build_output(BUILD_OUTPUT) == [
        BuildStep(1, 4, "ARG BASE_IMAGE=python:3.11-slim", False),
        BuildStep(2, 4, "FROM $BASE_IMAGE AS build", False),
        BuildStep(3, 4, "COPY requirements.lock /tmp/", True),
        BuildStep(4, 4, "COPY service/ /app/service/", False),
    ]


def test_parse_build_output_joins_split_chunks() -> None:
    chunks = ["Step 1/1 : RUN pi", "p install\n ---> Using ", "cache\n"]
    assert parse_build_output(chunks) == [BuildStep(1, 1, "RUN pip install", True)]


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("gpu-launcher/service:dev", None),
        ("registry.example:5000/team/svc:1.2", None),
        ("localhost/a__b:v1", None),
        ("[::1]:5000/x:y", None),
        ("My.Registry.io/x:1", None),  # a registry host may have capitals
        ("svc", None),
        ("Bad:1", "invalid reference format: repository name must be lowercase"),
        ("UPPER/x", "invalid reference format: repository name must be lowercase"),
        ("a b", "invalid reference format"),
        ("x:", "invalid reference format"),
        ("x:-tag", "invalid reference format"),
        ("x//y", "invalid reference format"),
        ("a" * 256, ("invalid reference format: repository name must not be more than 255 "
                    "characters")),
    ],
    ids=["repo-tag", "registry-port", "localhost", "ipv6", "host-caps", "bare", "caps",
         "caps-first-part", "space", "empty-tag", "dash-tag", "empty-component", "too-long"],
)
def test_parse_image_ref(value: str, error: str | None) -> None:
    if error is None:
        assert parse_image_ref(value) == value
        return
    assert error_text(ValueError, parse_image_ref, value) == error


def test_the_real_context_is_only_what_the_images_need() -> None:
    from tests.conftest import ROOT

    names = [f.arcname for f in context_files(ROOT, "Dockerfile")]
    tops = {n.split("/")[0] for n in names}
    assert tops <= {".dockerignore", "Dockerfile", "Dockerfile.gpu", "requirements.lock",
                    "service", "wheelhouse"}
    assert {"service/__main__.py", "service/models/digits.pt", "requirements.lock"} <= set(names)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
