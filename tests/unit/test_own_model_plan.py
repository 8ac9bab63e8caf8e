"""``up --model`` and ``--predictor`` in the plan (pure) and in up's sequencing (a fake
engine): what the create body gets, which image runs, what is built and what is only looked
up, and the copy a remote engine's models volume gets."""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from launcher import _remote_probe, _up
from launcher._cli import build_parser
from launcher._engine_errors import NotFound
from launcher._errors import UsageError
from launcher._model import check_model_file
from launcher._options import PlanOptions, plan_options_from_args
from launcher._plan import make_plan
from tests.fakeengine import FakeEngineBase


def _tag(*_: Any) -> str:
    return "gpu-launcher/service:cpu-aaa"


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "wide.pt2"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("wide/archive_format", b"pt2")
    return path


@pytest.fixture
def code(tmp_path: Path) -> Path:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "predict.py").write_text("class Predictor: ...\n")
    return tmp_path / "code"


def options(cwd: Path, *argv: str, remote: bool = False) -> PlanOptions:
    return plan_options_from_args(build_parser().parse_args(["up", *argv]), {}, str(cwd),
                                  remote=remote)


def test_a_model_file_is_mounted_read_only_with_model_path_and_its_digest(model: Path) -> None:
    opts = options(model.parent, "--model", "wide.pt2")
    plan = make_plan(opts, None, tag=_tag)
    create = plan.create
    assert create["Image"] == "gpu-launcher/service:cpu-aaa"  # the stock image
    assert create["HostConfig"]["Binds"][-1] == f"{model}:/model/wide.pt2:ro"
    assert create["Env"] == ["DEVICE=cpu", "MODEL_PATH=/model/wide.pt2"]
    assert create["Labels"]["org.gpu-launcher.model"] == check_model_file(str(model), "/").digest
    with zipfile.ZipFile(model, "a") as z:  # retrained: the plan (and so the container) changes
        z.writestr("wide/more", b"1")
    assert make_plan(options(model.parent, "--model", "wide.pt2"), None,
                     tag=_tag).plan_hash != plan.plan_hash


def test_on_a_remote_engine_the_model_is_not_mounted(model: Path) -> None:
    plan = make_plan(options(model.parent, "--model", str(model), remote=True), None, tag=_tag)
    assert not any("/model/" in b for b in plan.create["HostConfig"]["Binds"])
    assert "MODEL_PATH=/models/wide.pt2" in plan.create["Env"]


MODEL_CLASHES = [
    (["--predictor", "predict:Predictor", "--code", "code"],
     "--model and --predictor both say what to serve",
     "pass one: --model FILE (the stock image) or --predictor with --code DIR"),
    (["-e", "MODEL_PATH=/x.pt"],
     "--model sets MODEL_PATH; it is also given with --env or --env-file",
     "drop MODEL_PATH from --env / --env-file"),
]


@pytest.mark.parametrize("extra, message, hint", MODEL_CLASHES, ids=["predictor", "env"])
def test_model_clashes_are_usage_errors(model: Path, code: Path, extra: list[str],
                                        message: str, hint: str) -> None:
    with pytest.raises(UsageError) as caught:
        options(model.parent, "--model", str(model), *extra)
    assert (caught.value.message, caught.value.hint) == (message, hint)


def test_a_predictor_plan_runs_the_derived_image_on_the_service_image(code: Path) -> None:
    plan = make_plan(options(code.parent, "--predictor", "predict:Predictor", "--code", "code"),
                     None, tag=_tag)
    assert plan.predictor is not None
    assert plan.build.tag == "gpu-launcher/service:cpu-aaa"
    assert plan.predictor.service_image == "gpu-launcher/service:cpu-aaa"
    assert plan.image == plan.predictor.tag == plan.create["Image"]
    assert plan.image.startswith("gpu-launcher/service:predictor-")
    assert plan.to_json()["predictor"] == {
        "predictor": "predict:Predictor", "code": str(code), "requirements": None,
        "service_image": "gpu-launcher/service:cpu-aaa", "tag": plan.image}
    # A new service image (a filled wheelhouse changes its hash): a new derived tag with it.
    moved = plan.with_build(replace(plan.build, tag="gpu-launcher/service:cpu-bbb"))
    assert moved.predictor is not None
    assert moved.predictor.service_image == "gpu-launcher/service:cpu-bbb"
    assert moved.image != plan.image and moved.create["Image"] == moved.image
    assert moved.plan_hash != plan.plan_hash


def test_with_a_predictor_tag_names_the_derived_image_and_service_image_the_base(
        code: Path) -> None:
    plan = make_plan(options(code.parent, "--predictor", "predict:Predictor", "--code", "code",
                             "--tag", "team/model:1", "--service-image", "registry/svc:2"),
                     None, tag=_tag)
    assert (plan.build.tag, plan.image) == ("registry/svc:2", "team/model:1")
    assert plan.predictor is not None and plan.predictor.given_service_image
    assert plan.with_build(replace(plan.build, tag="x:1")).image == "team/model:1"


def test_service_image_without_a_predictor_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        options(tmp_path, "--service-image", "registry/svc:2")
    assert (caught.value.message, caught.value.hint) == (
        "--service-image needs --predictor MODULE:CLASS",
        "drop --service-image, or add --predictor and --code")


@pytest.mark.parametrize(("argv", "probed_in"), [
    ([], None),
    (["--tag", "team/svc:1"], "team/svc:1"),
    (["--predictor", "predict:Predictor", "--code", "code"], None),
    # --tag names the derived image, built after the probe: the service image is the hash's.
    (["--predictor", "predict:Predictor", "--code", "code", "--tag", "team/model:1"], None),
    (["--predictor", "predict:Predictor", "--code", "code", "--service-image", "registry/svc:2",
      "--tag", "team/model:1"], "registry/svc:2"),
], ids=["hash", "tag", "predictor", "predictor-tag", "service-image"])
def test_a_remote_engine_is_probed_in_the_service_image_up_would_run_under_its_own(
        code: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str],
        probed_in: str | None) -> None:
    opts = options(code.parent, "--gpus", "all", *argv, remote=True)
    # None: the content hash of the CPU service image of these options, as a CPU up plans it.
    image = probed_in or make_plan(replace(opts, gpus=()), None).build.tag
    engine = Engine()  # it has no image: the probe names the one it looked for
    monkeypatch.setattr(_remote_probe, "connect", lambda environ: engine)
    with pytest.raises(NotFound) as caught:
        _remote_probe.probe_for(opts, {"DOCKER_HOST": "ssh://gpu-box"}, False,
                                lambda: pytest.fail("a remote engine's GPUs are not NVML's here"))
    assert caught.value.message == f"the remote engine has no {image} to probe its GPUs with"


@dataclass
class Engine(FakeEngineBase):
    images: dict[str, str] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    archives: list[tuple[str, bytes]] = field(default_factory=list)

    def image_id(self, ref: str) -> str | None:
        return self.images.get(ref)

    def create_container(self, body: Mapping[str, Any], name: str | None = None) -> str:
        self.bodies.append(dict(body))
        self.calls.append("create")
        return "helper0123456789"

    def put_archive(self, container: str, path: str, data: bytes) -> None:
        self.calls.append(f"put {container} {path}")
        self.archives.append((path, data))

    def remove_container(self, container: str, force: bool = False) -> None:
        self.calls.append(f"remove {container}")


def test_an_unchanged_predictor_image_is_not_built(code: Path) -> None:
    plan = make_plan(options(code.parent, "--predictor", "predict:Predictor", "--code", "code"),
                     None, tag=_tag)
    engine = Engine(images={plan.build.tag: "sha256:base", plan.image: "sha256:derived"})
    assert _up.ensure_image(engine, plan, _up.UpPolicy()) == "sha256:base"
    assert _up.ensure_predictor_image(engine, plan, _up.UpPolicy()) == "sha256:derived"


def test_a_missing_service_image_given_is_never_built(code: Path) -> None:
    plan = make_plan(options(code.parent, "--predictor", "predict:Predictor", "--code", "code",
                             "--service-image", "registry/svc:2"), None, tag=_tag)
    with pytest.raises(NotFound) as caught:
        _up.ensure_image(Engine(), plan, _up.UpPolicy(build=True))
    assert (caught.value.message, caught.value.hint) == (
        "--service-image registry/svc:2 is not on the engine",
        ("build one (launcher build) or pull it, or drop --service-image to build the planned "
        "one"))


def test_no_build_with_a_missing_predictor_image_says_how_to_build_it(code: Path) -> None:
    plan = make_plan(options(code.parent, "--predictor", "predict:Predictor", "--code", "code"),
                     None, tag=_tag)
    with pytest.raises(NotFound) as caught:
        _up.ensure_predictor_image(Engine(), plan, _up.UpPolicy(no_build=True))
    assert caught.value.message == (f"image {plan.image} is not on the engine and --no-build "
                                    "was given")


def test_the_remote_copy_goes_through_a_helper_that_is_removed(model: Path) -> None:
    opts = options(model.parent, "--name", "svc", "--model", str(model), remote=True)
    assert opts.model is not None
    plan = make_plan(opts, None, tag=_tag)
    engine = Engine()
    _up.copy_model(engine, plan, opts.model)
    assert engine.calls == ["create", "put helper0123456789 /models", "remove helper0123456789"]
    [body] = engine.bodies
    assert body["HostConfig"] == {"Binds": ["svc-models:/models"], "NetworkMode": "none"}
    assert (body["Image"], body["Cmd"], body["Labels"]["org.gpu-launcher.managed"]) == (
        "gpu-launcher/service:cpu-aaa", ["true"], "model-copy")
    with tarfile.open(fileobj=io.BytesIO(engine.archives[0][1])) as tar:
        assert tar.getnames() == ["wide.pt2"]
