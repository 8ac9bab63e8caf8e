"""Session fixtures for the real engine: the stand-in base image, a filled wheelhouse under
.cache/, and the CPU service image built once per session through `launcher build --wheelhouse`.

Every image built here carries TEST_LABEL and a per-session label (so its content-hash tag is
this session's own, never another run's or a user's) and is removed at the end of the session.
Layers stay in the engine's build cache, so the next session rebuilds in seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from launcher._cuda import cuda_table
from launcher._engine import connect
from launcher._wheelhouse import PROBE_COMMAND, PythonTarget, fill_wheelhouse, parse_probe
from tests.conftest import ROOT, TEST_LABEL, unavailable, unique

# The debootstrap bookworm stand-in that scripts/standin-images imports (python3 3.11 + venv).
STANDIN = "gpu-launcher/standin-bookworm:latest"
WHEELHOUSE = ROOT / ".cache" / "wheelhouse"
SESSION_LABEL = "org.gpu-launcher.test.session"
BUILD_TIMEOUT = 1800  # a cold build installs torch from the wheelhouse


@dataclass(frozen=True)
class BuiltImage:
    """An image `launcher build` made: its tag and id, the steps and the stderr it printed."""

    tag: str
    id: str
    built: bool
    steps: tuple[dict[str, Any], ...]
    stderr: str

    def __str__(self) -> str:
        return self.tag


def label_args(labels: dict[str, str]) -> list[str]:
    """``--label KEY=VALUE`` for each of ``labels``, as ``up`` and ``build`` take them."""
    return [a for k, v in labels.items() for a in ("--label", f"{k}={v}")]


def launcher_build(*args: str, labels: dict[str, str], context: Path = ROOT) -> BuiltImage:
    """`python -m launcher build ... --json` as a user runs it; fails the test on a non-zero exit."""
    proc = subprocess.run(
        [sys.executable, "-m", "launcher", "build", "--context", str(context), "--json",
         *label_args(labels), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False,
    )
    assert proc.returncode == 0, f"launcher build {' '.join(args)} exited {proc.returncode}:\n" \
                                 f"{proc.stderr[-6000:]}"
    result = json.loads(proc.stdout)
    return BuiltImage(result["tag"], result["id"], result["built"], tuple(result["steps"]),
                      proc.stderr)


@pytest.fixture(scope="session")
def standin_image(docker_client: Any) -> str:
    """The stand-in base image; missing: fail in CI (scripts/test makes it), skip elsewhere."""
    import docker.errors

    try:
        docker_client.images.get(STANDIN)
    except docker.errors.ImageNotFound:
        unavailable(f"no stand-in base image {STANDIN}; run scripts/setup --standins")
    return STANDIN


@pytest.fixture(scope="session")
def image_labels(docker_client: Any) -> Iterator[dict[str, str]]:
    """TEST_LABEL plus this session's own label, for every image the docker tests build. At the
    end, the untagged layers that carry it go too (see :func:`remove_session_layers`)."""
    labels = {**TEST_LABEL, SESSION_LABEL: unique("session")}
    yield labels
    left = remove_session_layers(docker_client, labels[SESSION_LABEL])
    assert not left, f"tests left images of this session in the engine: {left}"


def remove_session_layers(client: Any, session: str, passes: int = 50) -> list[str]:
    """Remove every image carrying ``session``'s label, leaves first; what is left (ids).

    They are the layers above this session's own LABEL step (the images built FROM a session's
    service image inherit its labels), which no other build can reuse. Each is removed on its
    own (``noprune``): the untagged layers below it, without the label, are the build cache the
    next session builds on, and a prune would take them with it. A layer with children is
    refused ("conflict") until its children are gone, hence the passes."""
    import docker.errors

    for _ in range(passes):
        ids = [i.id for i in client.images.list(all=True,
                                                filters={"label": f"{SESSION_LABEL}={session}"})]
        removed = 0
        for image in ids:
            try:
                client.images.remove(image, noprune=True)
                removed += 1
            except docker.errors.APIError:  # a parent of one not removed yet, or in use
                continue
        if not ids or not removed:
            return ids
    return ids


@pytest.fixture(scope="session")
def standin_target(standin_image: str) -> PythonTarget:
    """The stand-in's Python and platform, the wheels' target (one probe container a session)."""
    engine = connect()
    try:
        return parse_probe(engine.run_once(standin_image, PROBE_COMMAND), standin_image)
    finally:
        engine.close()


@pytest.fixture(scope="session")
def wheelhouse(standin_target: PythonTarget) -> Path:
    """.cache/wheelhouse holding requirements.lock's wheels for the stand-in's Python (pip
    downloads only what is missing; torch comes from pip's own find-links when it has it)."""
    fill_wheelhouse(WHEELHOUSE, ROOT / "requirements.lock", standin_target,
                    cuda_table().cpu_index_url)
    return WHEELHOUSE


@pytest.fixture(scope="session")
def extras_wheelhouse(wheelhouse: Path) -> Path:
    """.cache/wheelhouse-extras: the session wheelhouse's wheels (hard links) plus what the
    tests' predictors require. Kept apart because the service image's tag hashes the wheels of
    the wheelhouse it is built from: adding a predictor's wheels to .cache/wheelhouse mid-session
    would name another image than the session's ``cpu_image`` (a fresh clone's CI saw it)."""
    extras = wheelhouse.parent / "wheelhouse-extras"
    extras.mkdir(parents=True, exist_ok=True)
    for wheel in wheelhouse.glob("*.whl"):
        target = extras / wheel.name
        if not target.exists():
            try:
                os.link(wheel, target)
            except OSError:  # another file system
                shutil.copy2(wheel, target)
    return extras


def remove_image(docker_client: Any, tag: str) -> None:
    import docker.errors

    try:
        image = docker_client.images.get(tag)
    except docker.errors.ImageNotFound:
        return
    if image.labels.get(SESSION_LABEL) is None:
        raise AssertionError(f"refusing to remove {tag}: it was not built by the tests")
    # noprune: the untagged parents are the build cache other sessions may be building on
    # right now; pruning them under a running build fails it ("failed to get digest").
    docker_client.images.remove(tag, force=True, noprune=True)


def remove_predictor_images(docker_client: Any, image_labels: dict[str, str]) -> None:
    """The derived predictor images this session built (``up --predictor``)."""
    session = image_labels[SESSION_LABEL]
    for image in docker_client.images.list(filters={"label": f"{SESSION_LABEL}={session}"}):
        for tag in image.tags:
            if tag.startswith("gpu-launcher/service:predictor-"):
                remove_image(docker_client, tag)


@pytest.fixture(scope="session")
def cpu_image(docker_client: Any, standin_image: str, wheelhouse: Path,
              image_labels: dict[str, str]) -> Iterator[BuiltImage]:
    """The CPU service image, built once per session from the stand-in, offline."""
    image = launcher_build("--base-image", standin_image, "--wheelhouse", str(wheelhouse),
                           labels=image_labels)
    yield image
    remove_image(docker_client, image.tag)


def _leftovers(client: Any) -> set[str]:
    """What tests may leave behind: anything carrying the test label, and dangling anonymous
    volumes (a container removed without its VOLUME /models, /data ones)."""
    label = {"label": [f"{k}={v}" for k, v in TEST_LABEL.items()]}
    found = {f"container {c.name}" for c in client.containers.list(all=True, filters=label)}
    found |= {f"network {n.name}" for n in client.networks.list(filters=label)}
    found |= {f"volume {v.name}" for v in client.volumes.list(filters=label)}
    found |= {f"volume {v.name}" for v in client.volumes.list(filters={"dangling": True})
              if len(v.name) == 64}
    return found


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind(docker_client: Any) -> Iterator[None]:
    """Tests clean up after themselves: fail the session on what they left in the engine."""
    before = _leftovers(docker_client)
    yield
    left = sorted(_leftovers(docker_client) - before)
    assert not left, f"tests left these in the engine: {left}"
