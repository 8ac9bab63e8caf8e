"""``launcher up``'s sequencing (launcher/_up.py) against a fake engine: the GPU preflight's
fallback policy, keep/replace, and waiting with a fake clock; plus the unreachable engine as a
real process, and the archive the remote probe (launcher/_remote_probe.py) copies in."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from launcher import _remote_probe, _up
from launcher._build import BuildSpec
from launcher._cli import build_parser
from launcher._engine import EngineInfo
from launcher._engine_errors import (
    TOOLKIT_HINT,
    BuildFailed,
    GpuRuntimeMissing,
    PortInUse,
    classify,
)
from launcher._engine_memory import RECHECK_SECONDS, EngineMemory, cache_dir
from launcher._errors import LauncherError
from launcher._flags import parse_volume
from launcher._gpus import parse_gpus
from launcher._limits import parse_ulimit
from launcher._options import PlanOptions, plan_options_from_args
from launcher._plan import Plan, make_plan
from launcher._probe import GpuInfo, Probe
from tests.clihelpers import run_launcher
from tests.conftest import ROOT
from tests.fakeengine import FakeEngineBase

H100 = GpuInfo(0, "GPU-h100", "NVIDIA H100 80GB HBM3", 80 << 30, (9, 0), False)
PROBE = Probe("580.65.06", (13, 0), (H100,))


def options(*gpus: str, require_gpu: bool = False) -> PlanOptions:
    return PlanOptions(name="svc", gpus=tuple(parse_gpus(g) for g in gpus), gpus_raw=gpus,
                      require_gpu=require_gpu)


def plan_for(opts: PlanOptions) -> Plan:
    return make_plan(opts, PROBE if opts.gpus else None, tag=lambda *_: "img:1")


@dataclass
class FakeEngine(FakeEngineBase):
    runtimes: tuple[str, ...] = ("io.containerd.runc.v2", "runc")
    inspects: list[dict[str, Any]] = field(default_factory=list)
    existing: dict[str, Any] | None = None
    calls: list[str] = field(default_factory=list)
    memlock_max: int | None = None  # the engine's own hard memlock limit (None: unlimited)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    engine_id: str = ""
    refused: int = 0  # starts the engine refused for memlock

    def image_id(self, ref: str) -> str | None:
        return "sha256:1" if ref == "img:1" else None

    def close(self) -> None:
        self.calls.append("close")

    def info(self) -> EngineInfo:
        return EngineInfo("20.10.24", "1.41", self.runtimes, "runc", (), self.engine_id)

    def find_container(self, name: str) -> dict[str, Any] | None:
        return self.existing if name == "svc" else None

    def inspect_container(self, container: str) -> dict[str, Any]:
        return self.inspects.pop(0) if len(self.inspects) > 1 else self.inspects[0]

    def logs(self, container: str, tail: int | None = None) -> str:
        return "line 1\nTraceback: boom\n"

    def stop(self, container: str, timeout: int = 10) -> None:
        self.calls.append(f"stop {container} {timeout}")

    def remove_container(self, container: str, force: bool = False) -> None:
        self.calls.append(f"remove {container}")

    def create_container(self, body: Mapping[str, Any], name: str | None = None) -> str:
        self.calls.append(f"create {name}")
        self.bodies.append(dict(body))
        return "new0123456789"

    def start(self, container: str) -> None:
        self.calls.append(f"start {container}")
        memlock = next(u["Hard"] for u in self.bodies[-1]["HostConfig"]["Ulimits"]
                       if u["Name"] == "memlock")
        if self.memlock_max is not None and not 0 <= memlock <= self.memlock_max:
            self.refused += 1
            refused = classify("error setting rlimit type 8: operation not permitted: unknown",
                               "starting container new0")  # as the real engine maps it
            assert refused is not None
            raise refused


def test_preflight_falls_back_to_cpu_for_gpus_all_without_a_gpu_runtime(
        capsys: pytest.CaptureFixture[str]) -> None:
    opts = options("all")
    plan = _up.preflight(FakeEngine(), plan_for(opts), opts)
    assert (plan.gpu, plan.build.dockerfile, plan.create["HostConfig"]["DeviceRequests"]) == (
        False, "Dockerfile", None)
    assert capsys.readouterr().err == (
        "launcher: warning: --gpus all: the Docker engine has no NVIDIA runtime (runtimes: "
        "io.containerd.runc.v2, runc) and no CDI spec directories; running on CPU\n")


@pytest.mark.parametrize(("gpus", "require", "message"), [
    (("device=0",), False, ("--gpus device=0: the Docker engine has no NVIDIA runtime "
                           "(runtimes: io.containerd.runc.v2, runc) and no CDI spec directories")),
    (("all",), True, ("--gpus all: the Docker engine has no NVIDIA runtime "
                     "(runtimes: io.containerd.runc.v2, runc) and no CDI spec directories")),
], ids=["named-device", "require-gpu"])
def test_preflight_refuses_named_devices_and_require_gpu(gpus: tuple[str, ...], require: bool,
                                                         message: str) -> None:
    opts = options(*gpus, require_gpu=require)
    with pytest.raises(GpuRuntimeMissing) as exc:
        _up.preflight(FakeEngine(), plan_for(opts), opts)
    assert (exc.value.message, exc.value.hint) == (message, TOOLKIT_HINT)


def test_preflight_passes_a_gpu_plan_when_the_engine_has_the_nvidia_runtime() -> None:
    opts = options("all")
    plan = plan_for(opts)
    engine = FakeEngine(runtimes=("nvidia", "runc"))
    assert _up.preflight(engine, plan, opts) is plan


def test_preflight_leaves_a_no_probe_gpu_plan_to_the_engine() -> None:
    opts = replace(options("all"), build=replace(options().build, no_probe=True))
    plan = make_plan(opts, None, tag=lambda *_: "img:1")
    assert _up.preflight(FakeEngine(), plan, opts) is plan


def managed(plan: Plan, running: bool = True) -> dict[str, Any]:
    return {"Id": "old0123456789", "Image": "sha256:1", "Config": {"Labels": plan.create["Labels"]},
            "State": {"Running": running, "Status": "running" if running else "exited"}}


def test_up_again_with_the_same_plan_leaves_the_container_alone() -> None:
    plan = plan_for(options())
    engine = FakeEngine(existing=managed(plan))
    assert _up.ensure_container(engine, plan, "sha256:1") == "old0123456789"
    assert engine.calls == []


def test_up_with_a_changed_plan_replaces_the_container() -> None:
    old = plan_for(options())
    new = plan_for(replace(options(), env=("LOG_LEVEL=debug",)))
    engine = FakeEngine(existing=managed(old))
    assert _up.ensure_container(engine, new, "sha256:1") == "new0123456789"
    assert engine.calls == ["stop old0123456789 10", "remove old0123456789", "create svc",
                            "start new0123456789"]


HARD = 8 << 20  # this shell's hard memlock limit in these tests


def memlocks(engine: FakeEngine) -> list[Any]:
    return [next(u for u in b["HostConfig"]["Ulimits"] if u["Name"] == "memlock")
            for b in engine.bodies]


@pytest.fixture
def shell_memlock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("launcher._up.resource.getrlimit", lambda _: (HARD, HARD))


@pytest.mark.usefixtures("shell_memlock")
def test_memlock_unlimited_refused_is_capped_at_the_shells_limit_with_a_warning(
        capsys: pytest.CaptureFixture[str]) -> None:
    engine = FakeEngine(memlock_max=HARD)
    assert _up.ensure_container(engine, plan_for(options()), "sha256:1") == "new0123456789"
    assert memlocks(engine) == [{"Name": "memlock", "Soft": -1, "Hard": -1},
                                {"Name": "memlock", "Soft": HARD, "Hard": HARD}]
    assert ("launcher: warning: the engine cannot raise memlock to unlimited; capped at 8388608 "
            "bytes (its limit); pinned-memory copies may be slower; --ulimit memlock=N sets it "
            "explicitly\n") in capsys.readouterr().err


@pytest.mark.usefixtures("shell_memlock")
def test_memlock_unlimited_refused_by_a_remote_engine_names_the_ulimit_flag() -> None:
    engine = FakeEngine(memlock_max=HARD)
    with pytest.raises(LauncherError) as exc:
        _up.ensure_container(engine, plan_for(options()), "sha256:1", _up.UpPolicy(remote=True))
    assert exc.value.message == ("starting svc: the engine cannot raise the memlock limit to "
                                 "unlimited (its own hard limit is lower)")
    assert exc.value.hint == ("pass a limit it allows, --ulimit memlock=N (bytes), or run "
                              "dockerd with LimitMEMLOCK=infinity (systemd) or ulimit -l "
                              "unlimited")


@pytest.mark.usefixtures("shell_memlock")
def test_a_memlock_the_user_named_is_never_capped_behind_their_back() -> None:
    opts = replace(options(), ulimits=(parse_ulimit("memlock=1073741824"),))
    engine = FakeEngine(memlock_max=HARD)
    with pytest.raises(LauncherError) as exc:
        _up.ensure_container(engine, plan_for(opts), "sha256:1")
    assert exc.value.message == ("starting svc: the engine cannot raise memlock to 1073741824 "
                                 "bytes (--ulimit memlock; its own hard limit is lower)")
    assert exc.value.hint == ("pass a lower --ulimit memlock=N (this shell's hard limit: "
                              "8388608), or run dockerd with LimitMEMLOCK=infinity (systemd) or "
                              "ulimit -l unlimited")
    assert len(engine.bodies) == 1
    allowed = replace(options(), ulimits=(parse_ulimit(f"memlock={HARD}"),))
    engine = FakeEngine(memlock_max=HARD)
    assert _up.ensure_container(engine, plan_for(allowed), "sha256:1") == "new0123456789"
    assert memlocks(engine) == [{"Name": "memlock", "Soft": HARD, "Hard": HARD}]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def state(status: str = "running", restarts: int = 0) -> dict[str, Any]:
    return {"State": {"Status": status, "Running": status == "running", "ExitCode": 1},
            "RestartCount": restarts, "NetworkSettings": {"Ports": {}}}


def test_wait_ready_gives_up_after_the_timeout_with_the_last_log_lines(
        capsys: pytest.CaptureFixture[str]) -> None:
    engine = FakeEngine(inspects=[{**state(), "State": {"Status": "running", "Running": True,
                                                        "Health": {"Status": "starting"}}}])
    clock = Clock()
    with pytest.raises(LauncherError) as exc:
        _up.wait_ready(engine, "c", "svc", _up.UpPolicy(timeout=5),
                       clock=clock, sleep=clock.sleep)
    assert exc.value.message == "svc did not become ready: not ready after 5s"
    assert exc.value.hint == ("see its log (launcher logs --name svc); "
                              "remove it with launcher down --name svc")
    assert capsys.readouterr().err == ("launcher: last 20 log lines of svc:\n"
                                       "  | line 1\n  | Traceback: boom\n")
    assert 5.0 <= clock.now < 5.0 + 2 * _up._POLL  # gave up at the first look past 5 s


def test_wait_ready_fails_at_once_when_the_container_restarts() -> None:
    engine = FakeEngine(inspects=[state(), state("restarting", restarts=1)])
    clock = Clock()
    with pytest.raises(LauncherError) as exc:
        _up.wait_ready(engine, "c", "svc", _up.UpPolicy(timeout=60),
                       clock=clock, sleep=clock.sleep)
    assert exc.value.message == ("svc did not become ready: the container exited (code 1) and "
                                 "was restarted 1 time(s)")
    assert clock.now < 1


def test_up_with_docker_host_at_a_missing_socket_exits_1_with_one_line_and_a_hint() -> None:
    result = run_launcher("up", "--no-probe",
                         env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert (result.returncode, result.stdout) == (1, "")
    lines = result.stderr.splitlines()
    assert lines[0] == "launcher: CPU image from python:3.11-slim"
    assert lines[1].startswith("launcher: error: cannot reach the Docker engine: ")
    assert lines[2] == ("hint: no engine answers at DOCKER_HOST=unix:///nonexistent/docker.sock: "
                        "start it there, or unset DOCKER_HOST for the local one")
    assert len(lines) == 3


def test_the_remote_probe_archive_holds_only_the_probe_modules(tmp_path: Any) -> None:
    import io
    import subprocess
    import sys
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(_remote_probe._probe_archive())) as tar:
        assert [(m.name, m.isdir()) for m in tar.getmembers()] == [
            ("launcher-probe", True), ("launcher-probe/launcher", True),
            ("launcher-probe/launcher/data", True),
            ("launcher-probe/launcher/__init__.py", False),
            ("launcher-probe/launcher/_errors.py", False),
            ("launcher-probe/launcher/_cuda.py", False),
            ("launcher-probe/launcher/_help.py", False),
            ("launcher-probe/launcher/_probe.py", False),
            ("launcher-probe/launcher/cmd_probe.py", False),
            ("launcher-probe/launcher/data/cuda.json", False)]
        tar.extractall(tmp_path)
    # ... and they are enough: the probe imports nothing else of the launcher (the service
    # image has service/ and pynvml, not the launcher).
    probe = tmp_path / "launcher-probe"
    code = ("import sys, launcher.cmd_probe as p, launcher._cuda as c; "
            "assert p.__file__.startswith(sys.argv[1]), p.__file__; c.cuda_table(); "
            "print(sorted(m for m in sys.modules if m.startswith('launcher')))")
    result = subprocess.run([sys.executable, "-c", code, str(probe)], capture_output=True,
                            text=True, timeout=60, check=False, cwd=tmp_path,
                            env={"PYTHONPATH": f"{probe}:{ROOT}", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(sorted(
        ["launcher", "launcher._errors", "launcher._cuda", "launcher._help", "launcher._probe",
         "launcher.cmd_probe"]))


@pytest.mark.parametrize(("tag", "up_opts"), [
    (None, _up.UpPolicy()),  # the image is there
    ("mine:1", _up.UpPolicy(build=True)),  # an explicit tag does not hash the wheels
    (None, _up.UpPolicy(no_build=True)),
], ids=["image-present", "explicit-tag", "no-build"])
def test_the_wheelhouse_is_filled_first_only_before_a_content_hash_build(
        tmp_path: Any, tag: str | None, up_opts: _up.UpPolicy) -> None:
    build = replace(options().build, wheelhouse=tmp_path, tag=tag)
    opts = replace(options(), build=build)
    plan = make_plan(opts, None, tag=lambda *_: "img:1")
    assert _up.fill_wheelhouse_first(FakeEngine(), plan, up_opts, tag is not None) == plan


@pytest.mark.parametrize(("argv", "verbose"), [([], False), (["--verbose"], True)],
                         ids=["quiet", "verbose"])
def test_up_verbose_builds_with_the_builders_output_as_the_failed_build_hint_says(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Any, argv: list[str], verbose: bool) -> None:
    args = build_parser().parse_args(["up", "--build", *argv])
    opts = plan_options_from_args(args, {}, str(tmp_path))
    seen: list[bool] = []

    def failing_build(engine: Any, spec: BuildSpec, log: Any) -> None:
        seen.append(spec.verbose)
        raise BuildFailed("building img:1 from Dockerfile failed: boom",
                          "rerun with --verbose for the whole build output")

    monkeypatch.setattr(_up, "build_image", failing_build)
    monkeypatch.setattr(_up, "connect", lambda: FakeEngine())
    with pytest.raises(BuildFailed) as info:
        _up.up(plan_for(opts), opts, _up.UpPolicy(build=True))
    assert info.value.hint == "rerun with --verbose for the whole build output"
    assert seen == [verbose]


def test_the_remote_probe_modules_import_only_each_other_at_import_time() -> None:
    import ast

    shipped = {f"launcher.{name[:-3]}" for name in _remote_probe._PROBE_FILES} | {"launcher"}
    for name in _remote_probe._PROBE_FILES:
        tree = ast.parse((ROOT / "launcher" / name).read_text())
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        modules = {a.name for n in top if isinstance(n, ast.Import) for a in n.names} | {
            n.module for n in top if isinstance(n, ast.ImportFrom) and n.module}
        assert {m for m in modules if m.startswith("launcher")} <= shipped, name


ENGINE_ID = "QU25:UW45:QCK6:WU7M"


@pytest.mark.usefixtures("shell_memlock")
def test_a_refused_memlock_is_learned_once_per_engine(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = _up.UpPolicy(state_dir=tmp_path)
    first = FakeEngine(memlock_max=HARD, engine_id=ENGINE_ID)
    assert _up.ensure_container(first, plan_for(options()), "sha256:1", policy) == "new0123456789"
    assert (first.refused, memlocks(first)[-1]["Hard"]) == (1, HARD)
    capsys.readouterr()
    again = FakeEngine(memlock_max=HARD, engine_id=ENGINE_ID)  # the next `up`, same engine
    assert _up.ensure_container(again, plan_for(options()), "sha256:1", policy) == "new0123456789"
    assert (again.refused, memlocks(again)) == (0, [{"Name": "memlock", "Soft": HARD,
                                                     "Hard": HARD}])
    assert capsys.readouterr().err.startswith(
        "launcher: warning: the engine cannot raise memlock to unlimited; capped at 8388608 ")
    other = FakeEngine(memlock_max=HARD, engine_id="OTHER:ENGINE")
    _up.ensure_container(other, plan_for(options()), "sha256:1", policy)
    assert other.refused == 1  # another engine is asked for itself
    unlimited = FakeEngine(engine_id="UNLIMITED")  # an engine that can: nothing learned
    _up.ensure_container(unlimited, plan_for(options()), "sha256:1", policy)
    assert memlocks(unlimited) == [{"Name": "memlock", "Soft": -1, "Hard": -1}]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "engine-OTHER_ENGINE.json", "engine-QU25_UW45_QCK6_WU7M.json"]


@pytest.mark.parametrize(("age", "shell", "text", "expected"), [
    (60.0, HARD, None, HARD),
    (RECHECK_SECONDS + 1, HARD, None, None),
    (60.0, HARD * 2, None, None),
    (60.0, HARD, "{not json", None),
], ids=["fresh", "a-day-old", "other-shell-limit", "unreadable"])
def test_what_is_learned_about_an_engine_is_asked_again_when_it_may_be_stale(
        tmp_path: Path, age: float, shell: int, text: str | None, expected: int | None) -> None:
    EngineMemory(tmp_path, ENGINE_ID, clock=lambda: 1000.0).remember_memlock(HARD, HARD)
    memory = EngineMemory(tmp_path, ENGINE_ID, clock=lambda: 1000.0 + age)
    if text is not None:
        memory.path.write_text(text)
    assert memory.memlock_limit(shell) == expected


def test_cache_dir_follows_xdg() -> None:
    assert cache_dir({"XDG_CACHE_HOME": "/x", "HOME": "/h"}) == Path("/x/gpu-launcher")
    assert cache_dir({"HOME": "/h"}) == Path("/h/.cache/gpu-launcher")


def test_up_fills_the_wheelhouse_first_then_preflights_and_plans_only_once(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    opts = replace(options("all"), build=replace(options().build, wheelhouse=tmp_path))
    filled: list[BuildSpec] = []
    built: list[BuildSpec] = []
    plans: list[Plan] = []

    def counting_make_plan(*args: Any, **kwargs: Any) -> Plan:
        plans.append(make_plan(*args, **kwargs))
        return plans[-1]

    def failing_build(engine: Any, spec: BuildSpec, log: Any) -> None:
        built.append(spec)
        raise BuildFailed("building failed: boom", "rerun with --verbose")

    monkeypatch.setattr(_up, "prepare_wheelhouse", lambda e, spec, log: filled.append(spec))
    monkeypatch.setattr(_up, "build_image", failing_build)
    monkeypatch.setattr(_up, "make_plan", counting_make_plan)
    monkeypatch.setattr(_up, "connect", lambda: FakeEngine())  # no GPU runtime: CPU fallback
    with pytest.raises(BuildFailed):
        _up.up(plan_for(opts), opts, _up.UpPolicy())
    assert len(plans) == 1  # the CPU fallback; the wheelhouse does not make the plan again
    assert capsys.readouterr().err.count("launcher: warning: --gpus all: the Docker engine has "
                                         "no NVIDIA runtime") == 1
    assert [s.dockerfile for s in filled] == ["Dockerfile"]
    assert built[0].wheelhouse_ready and built[0].tag.startswith("gpu-launcher/service:cpu-")


@dataclass
class VolumeEngine(FakeEngineBase):
    present: set[str] = field(default_factory=set)
    broken: str = ""  # a volume whose lookup the engine fails
    created: dict[str, dict[str, str]] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)

    def volume_exists(self, name: str) -> bool:
        if name == self.broken:
            raise LauncherError(f"inspecting volume {name}: boom", hint="h")
        return name in self.present

    def create_volume(self, name: str, labels: Mapping[str, str] | None = None) -> None:
        self.created[name] = dict(labels or {})

    def remove_volume(self, name: str, force: bool = False) -> None:
        self.removed.append(name)


def test_ensure_volumes_creates_only_the_missing_default_volumes_with_the_launchers_labels(
        ) -> None:
    volumes = tuple(parse_volume(v, "/") for v in ("/host:/x", "other:/y"))
    plan = plan_for(replace(options(), volumes=volumes))
    engine = VolumeEngine(present={"svc-data"})
    _up.ensure_volumes(engine, plan)
    assert engine.created == {"svc-models": {"org.gpu-launcher.managed": "true",
                                             "org.gpu-launcher.name": "svc"}}


@pytest.mark.parametrize("broken", ["svc-models", "svc-data"])
def test_ensure_volumes_asked_at_once_raises_the_engines_error(broken: str) -> None:
    engine = VolumeEngine(broken=broken)
    with pytest.raises(LauncherError) as exc:
        _up.ensure_volumes(engine, plan_for(options()))
    assert exc.value.message == f"inspecting volume {broken}: boom"
    assert engine.removed == list(engine.created)  # the other one, made here, is gone again


@pytest.mark.parametrize("image", ["service", "predictor"])
def test_no_build_refuses_a_missing_image_before_building_it(tmp_path: Path, image: str) -> None:
    class MissingEngine(FakeEngine):
        def image_id(self, ref: str) -> str | None:
            return "sha256:1" if image == "predictor" and ref == "img:1" else None

    code = tmp_path / "code"
    code.mkdir()
    (code / "predict.py").write_text("class P: ...\n")
    argv = ["--predictor", "predict:P", "--code", str(code)] if image == "predictor" else []
    opts = plan_options_from_args(build_parser().parse_args(["up", *argv]), {}, str(tmp_path))
    plan = plan_for(opts)
    ensure = _up.ensure_image if image == "service" else _up.ensure_predictor_image
    with pytest.raises(LauncherError) as exc:
        ensure(MissingEngine(), plan, _up.UpPolicy(no_build=True))  # a build: an engine error
    missing = plan.build.tag if image == "service" else plan.predictor.tag  # type: ignore[union-attr]
    assert exc.value.message == f"image {missing} is not on the engine and --no-build was given"


@dataclass
class RefusingEngine(FakeEngine, VolumeEngine):
    """The image is there; starting the container fails as the engine's does."""

    refusal: LauncherError = field(default_factory=lambda: LauncherError("boom"))
    foreign: bool = False  # a container of that name that launcher did not create

    def find_container(self, name: str) -> dict[str, Any] | None:
        return {"Id": "x", "Config": {"Labels": {}}} if self.foreign else None

    def start(self, container: str) -> None:
        raise self.refusal


@pytest.mark.parametrize("present", [(), ("svc-data",)], ids=["none", "data-volume-kept"])
@pytest.mark.parametrize("foreign", [False, True], ids=["port-taken", "name-held"])
def test_a_failed_up_removes_the_volumes_it_created_and_only_those(
        monkeypatch: pytest.MonkeyPatch, present: tuple[str, ...], foreign: bool) -> None:
    refusal = PortInUse("starting container new0: port is already allocated", hint="h")
    engine = RefusingEngine(present=set(present), refusal=refusal, foreign=foreign)
    monkeypatch.setattr(_up, "connect", lambda: engine)
    opts = options()
    with pytest.raises(LauncherError):
        _up.up(plan_for(opts), opts, _up.UpPolicy())
    made = sorted({"svc-models", "svc-data"} - set(present))
    assert sorted(engine.created) == made and sorted(engine.removed) == made


class Readyz:
    """A real HTTP server on 127.0.0.1 whose /readyz answers ``codes`` in turn (then the last)."""

    def __init__(self, *codes: int, body: bytes = b"") -> None:
        import http.server
        import threading

        answers = list(codes)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                code = answers.pop(0) if len(answers) > 1 else answers[0]
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.port = self.server.server_address[1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def readyz_503_503_200() -> Any:
    server = Readyz(503, 503, 200)
    yield server
    server.close()


@dataclass
class CountingEngine(FakeEngine):
    looks: int = 0

    def inspect_container(self, container: str) -> dict[str, Any]:
        self.looks += 1
        return super().inspect_container(container)


def test_wait_ready_polls_readyz_every_interval_and_takes_a_200_without_another_inspect(
        readyz_503_503_200: Readyz, capsys: pytest.CaptureFixture[str]) -> None:
    ports = {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(readyz_503_503_200.port)}]}
    engine = CountingEngine(inspects=[{**state(), "NetworkSettings": {"Ports": ports}}])
    clock = Clock()
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.sleep(seconds)

    url = _up.wait_ready(engine, "c", "svc", _up.UpPolicy(), clock=clock, sleep=sleep)
    assert url == f"http://127.0.0.1:{readyz_503_503_200.port}"
    assert sleeps == [_up._POLL, _up._POLL]  # 503, 503, 200: two waits of one interval
    assert engine.looks == 2  # the first look, and one after each 503 but not after the 200
    assert capsys.readouterr().err == "launcher: svc is ready (0.2s)\n"


def test_wait_ready_stops_at_once_when_readyz_says_failed_and_gives_its_reason(
        capsys: pytest.CaptureFixture[str]) -> None:
    reason = "MODEL_PATH=/models/m.pt: torch cannot load it (hint: point MODEL_PATH at a model)"
    server = Readyz(503, body=b'{"status": "failed", "reason": "%s", "replicas": []}'
                    % reason.encode())
    try:
        ports = {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(server.port)}]}
        starting = {"Status": "running", "Running": True, "Health": {"Status": "starting"}}
        engine = FakeEngine(inspects=[{**state(), "State": starting,
                                       "NetworkSettings": {"Ports": ports}}])
        clock = Clock()
        with pytest.raises(LauncherError) as exc:
            _up.wait_ready(engine, "c", "svc", _up.UpPolicy(timeout=180),
                           clock=clock, sleep=clock.sleep)
    finally:
        server.close()
    assert exc.value.message == f"svc did not become ready: the service failed: {reason}"
    assert clock.now == 0  # at the first look, not after --timeout
    assert capsys.readouterr().err.startswith("launcher: last 20 log lines of svc:\n")


@dataclass
class TalkingEngine(CountingEngine):
    """A container that writes to its log: every ``every`` s (``None``: once, after 0.05 s),
    from a thread of its own, as the real engine's watch does, until the watch is stopped."""

    every: float | None = None
    watched: int = 0
    stopped: int = 0

    def watch_output(self, container: str, on_output: Callable[[], None]) -> Callable[[], None]:
        self.watched += 1
        done = threading.Event()

        def talk() -> None:
            if self.every is None:
                if not done.wait(0.05):
                    on_output()
                return
            for _ in range(100_000):  # bounded: 100 s at the most
                if done.wait(self.every):
                    return
                on_output()

        thread = threading.Thread(target=talk, daemon=True)
        thread.start()

        def stop() -> None:
            done.set()
            thread.join(timeout=5)
            self.stopped += 1

        return stop


def test_wait_ready_looks_again_as_soon_as_the_container_writes_to_its_log(
        monkeypatch: pytest.MonkeyPatch) -> None:
    readyz = Readyz(503, 200)
    try:
        ports = {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(readyz.port)}]}
        engine = TalkingEngine(inspects=[{**state(), "NetworkSettings": {"Ports": ports}}])
        monkeypatch.setattr(_up, "_POLL", 30.0)  # without the wake-up: 30 s to the next look
        began = time.monotonic()
        assert _up.wait_ready(engine, "c", "svc", _up.UpPolicy()) is not None
        assert time.monotonic() - began < 15  # the log line, not the poll, brought it forward
        assert (engine.watched, engine.stopped) == (1, 1)  # over when up returns
    finally:
        readyz.close()


def test_a_service_ready_at_the_first_look_is_not_watched() -> None:
    readyz = Readyz(200)  # e.g. up kept the container running: one look, no log followed
    try:
        ports = {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(readyz.port)}]}
        engine = TalkingEngine(inspects=[{**state(), "NetworkSettings": {"Ports": ports}}])
        assert _up.wait_ready(engine, "c", "svc", _up.UpPolicy()) is not None
        assert (engine.looks, engine.watched, engine.stopped) == (1, 0, 0)
    finally:
        readyz.close()


def test_a_chatty_container_gets_a_look_at_most_every_min_gap(
        monkeypatch: pytest.MonkeyPatch) -> None:
    readyz = Readyz(*[503] * 30, 200)
    try:
        ports = {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(readyz.port)}]}
        engine = TalkingEngine(inspects=[{**state(), "NetworkSettings": {"Ports": ports}}],
                               every=0.0005)
        monkeypatch.setattr(_up, "_POLL", 30.0)
        began = time.monotonic()
        assert _up.wait_ready(engine, "c", "svc", _up.UpPolicy()) is not None
        elapsed = time.monotonic() - began
        # the first inspect, then one after each 503 but the first (that look is the first's)
        assert engine.looks == 30
        assert 30 * _up._MIN_GAP <= elapsed < 15  # woken thousands of times: 31 looks
    finally:
        readyz.close()


def test_up_prints_a_curl_that_sends_the_token_from_the_shell_never_its_value(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    server = Readyz(200, body=b'{"input_width": 3}')  # /readyz and GET / alike
    try:
        ports = {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(server.port)}]}

        @dataclass
        class UpEngine(CountingEngine, VolumeEngine):
            pass

        engine = UpEngine(inspects=[{**state(), "NetworkSettings": {"Ports": ports}}])
        monkeypatch.setattr(_up, "connect", lambda: engine)
        opts = replace(options(), env=("API_TOKEN=s3cret-value",))
        assert _up.up(plan_for(opts), opts, _up.UpPolicy()) == 0
    finally:
        server.close()
    out, err = capsys.readouterr()
    assert err.splitlines()[-1] == (
        f'  curl -s -H "Authorization: Bearer $API_TOKEN" http://127.0.0.1:{server.port}/predict '
        """-d '{"inputs":[[0,0,0]]}'""")
    assert "s3cret-value" not in out + err


@pytest.mark.parametrize(("gpus", "learn", "questions"), [
    ((), False, ["find svc"]),  # no state_dir: nothing is learned, so no docker info
    ((), True, ["find svc", "info"]),
    # preflight, the GPU image check and what is learned all need docker info: read once
    (("all",), True, ["find svc", "info"]),
], ids=["nothing-learned", "learns-about-the-engine", "gpu-learns-about-the-engine"])
def test_up_runs_the_plan_to_ready_with_each_question_asked_once(
        monkeypatch: pytest.MonkeyPatch, readyz_503_503_200: Readyz, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], gpus: tuple[str, ...], learn: bool,
        questions: list[str]) -> None:
    ports = {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(readyz_503_503_200.port)}]}
    asked: list[str] = []

    @dataclass
    class UpEngine(CountingEngine, VolumeEngine):
        def info(self) -> EngineInfo:
            asked.append("info")
            return super().info()

        def find_container(self, name: str) -> dict[str, Any] | None:
            asked.append(f"find {name}")
            return super().find_container(name)

        def inspect_image(self, ref: str) -> dict[str, Any]:
            return {"Id": "sha256:1", "Config": {"Env": []}}

    engine = UpEngine(inspects=[{**state(), "NetworkSettings": {"Ports": ports}}],
                      engine_id="E1", runtimes=("nvidia", "runc"))
    monkeypatch.setattr(_up, "connect", lambda: engine)
    monkeypatch.setattr(_up, "_POLL", 0.01)
    monkeypatch.setattr(_up, "nvidia_device_nodes", lambda: {"/dev/nvidia0": "195:0"})
    monkeypatch.setattr(_up, "dev_char_entries", lambda: ["195:0"])
    opts = options(*gpus)
    policy = _up.UpPolicy(state_dir=tmp_path if learn else None)
    assert _up.up(plan_for(opts), opts, policy) == 0
    assert sorted(asked) == questions
    assert engine.calls == ["create svc", "start new0123456789", "close"]
    assert sorted(engine.created) == ["svc-data", "svc-models"]
    out, err = capsys.readouterr()
    assert out == f"http://127.0.0.1:{readyz_503_503_200.port}\n"
    assert err.splitlines()[:2] == ["launcher: image img:1 is present",
                                    "launcher: svc: started new012345678 from img:1"]
