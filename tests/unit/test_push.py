"""`launcher push`, pure parts: the destination, the engine's push events as one line per
layer, the registry's failures as typed errors, and the default image = the one `up` runs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from launcher._cli import build_parser, main
from launcher._engine_errors import RegistryRefused, RegistryUnreachable, classify
from launcher._push import PushProgress, split_reference
from launcher.cmd_push import source_image
from tests.conftest import error_text
from tests.fakenvml import FakeNvml, loader


@pytest.mark.parametrize(("value", "expected", "error"), [
    ("predictor", ("predictor", "latest"), ""),
    ("127.0.0.1:5000/predictor", ("127.0.0.1:5000/predictor", "latest"), ""),
    ("127.0.0.1:5000/team/predictor:1.0", ("127.0.0.1:5000/team/predictor", "1.0"), ""),
    ("registry.example.com/p:v1-cu128", ("registry.example.com/p", "v1-cu128"), ""),
    ("Reg.example.com/P", None, "invalid reference format: repository name must be lowercase"),
    ("a b", None, "invalid reference format"),
    ("", None, "invalid reference format"),
], ids=["bare", "registry-port-no-tag", "registry-port-tag", "registry-tag", "upper", "space",
        "empty"])
def test_split_reference(value: str, expected: tuple[str, str] | None, error: str) -> None:
    if error:
        assert error_text(ValueError, split_reference, value) == error
    else:
        assert split_reference(value) == expected


# What docker 20.10's push stream says (recorded from the engine against docker-registry 2.8).
EVENTS: list[dict[str, Any]] = [
    {"status": "The push refers to repository [127.0.0.1:5000/p]"},
    {"status": "Preparing", "progressDetail": {}, "id": "b184bed345b1"},
    {"status": "Preparing", "progressDetail": {}, "id": "6a4ff00c5848"},
    {"status": "Waiting", "progressDetail": {}, "id": "6a4ff00c5848"},
    {"status": "Pushing", "progressDetail": {"current": 512, "total": 38}, "id": "b184bed345b1"},
    {"status": "Pushed", "progressDetail": {}, "id": "b184bed345b1"},
    {"status": "Pushing", "progressDetail": {"current": 1 << 20, "total": 169_200_000},
     "id": "6a4ff00c5848"},
    {"status": "Pushing", "progressDetail": {"current": 2 << 20, "total": 169_200_000},
     "id": "6a4ff00c5848"},
    {"status": "Pushed", "progressDetail": {}, "id": "6a4ff00c5848"},
    {"status": "Layer already exists", "progressDetail": {}, "id": "0123456789ab"},
    {"status": "Mounted from team/base", "progressDetail": {}, "id": "ba9876543210"},
    {"status": "v1: digest: sha256:" + "c" * 64 + " size: 529"},
    {"progressDetail": {}, "aux": {"Tag": "v1", "Digest": "sha256:" + "c" * 64, "Size": 529}},
]


def test_push_progress_is_one_line_per_layer_and_the_digest() -> None:
    progress = PushProgress()
    lines = [line for event in EVENTS for line in progress.feed(event)]
    assert lines == ["layer b184bed345b1: pushed (38 B)",
                     "layer 6a4ff00c5848: pushed (169.2 MB)",
                     "layer 0123456789ab: layer already exists",
                     "layer ba9876543210: mounted from team/base"]
    assert progress.digest == "sha256:" + "c" * 64


@pytest.mark.parametrize(("text", "kind", "hint"), [
    ('Get "http://127.0.0.1:5999/v2/": dial tcp 127.0.0.1:5999: connect: connection refused',
     RegistryUnreachable, "check that the registry runs"),
    ('Get "https://reg.invalid/v2/": dial tcp: lookup reg.invalid: no such host',
     RegistryUnreachable, "check that the registry runs"),
    ('Get "https://10.1.2.3:5000/v2/": http: server gave HTTP response to HTTPS client',
     RegistryUnreachable, "check that the registry runs"),
    ("no basic auth credentials", RegistryRefused, "log in as the Docker CLI does"),
    ("unauthorized: authentication required", RegistryRefused, "log in as the Docker CLI does"),
    ("denied: requested access to the resource is denied", RegistryRefused,
     "log in as the Docker CLI does"),
], ids=["refused", "no-host", "http-vs-https", "no-credentials", "unauthorized", "denied"])
def test_registry_failures_are_typed_with_a_hint(text: str, kind: type[Exception],
                                                 hint: str) -> None:
    error = classify(text, "pushing 127.0.0.1:5999/p:v1")
    assert isinstance(error, kind)
    assert error.message == f"pushing 127.0.0.1:5999/p:v1: {text}"
    assert error.hint is not None and error.hint.startswith(hint)


@pytest.mark.parametrize("flags", [[], ["--gpus", "all", "--no-probe"],
                                   ["--gpus", "1", "--cuda", "12.6", "--no-probe"],
                                   ["--base-image", "gpu-launcher/standin-bookworm:latest"],
                                   ["--label", "team=ml"]],
                         ids=["cpu", "gpu-unprobed", "gpu-cuda-pin", "base-image", "label"])
def test_push_defaults_to_the_image_up_runs(flags: list[str],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["up", "--dry-run", "--json", *flags]) == 0
    expected = json.loads(capsys.readouterr().out)["image"]
    args = build_parser().parse_args(["push", *flags, "127.0.0.1:5000/p"])
    assert source_image(args, loader(FakeNvml([], library_missing=True))) == expected


def test_push_image_flag_wins() -> None:
    args = build_parser().parse_args(["push", "--image", "me/svc:1", "--gpus", "all", "r/p"])
    assert source_image(args, loader(FakeNvml([], library_missing=True))) == "me/svc:1"
