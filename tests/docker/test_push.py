"""`launcher push` against a real registry: Debian's docker-registry (distribution 2.x) started
here on 127.0.0.1 (the engine treats 127.0.0.0/8 registries as insecure: plain http), an image
pushed, removed, pulled back by the Docker CLI with the same id; credentials from a Docker
config as the CLI keeps them (``auths``, a credential helper); a registry that refuses or does
not answer → exit 1, one line and a hint. Select with `-k push`."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.clihelpers import run_launcher
from tests.conftest import free_port, stop_process, tool_path, unique
from tests.docker.conftest import remove_image

pytestmark = [pytest.mark.docker, pytest.mark.slow]

USER, PASSWORD = "glt", "s3cret"
# bcrypt of PASSWORD (the registry's htpasswd takes bcrypt only); a test credential.
HTPASSWD = f"{USER}:$2b$12$CILFooN0I2YlCC7vsgfXxuCdt7vP3cisi2SP9LqwXd5sfHn8Ax/Iy\n"
DIGEST_LINE = re.compile(r"(?P<ref>\S+)@(?P<digest>sha256:[0-9a-f]{64})")
LAYER_LINE = re.compile(r"launcher: layer [0-9a-f]{12}: (pushed|layer already exists)( \(.+\))?")


@pytest.fixture(scope="module")
def registry_binary() -> str:
    return tool_path("docker-registry", "scripts/setup --tools (Debian: docker-registry)")


Registry = Callable[..., str]


@pytest.fixture
def registry(registry_binary: str, tmp_path: Path) -> Iterator[Registry]:
    """Start registries on 127.0.0.1 (``auth``: htpasswd); each its own storage; stopped by
    PID. Returns ``HOST:PORT``."""
    procs: list[tuple[subprocess.Popen[bytes], Any]] = []

    def start(auth: bool = False) -> str:
        port = free_port()
        root = tmp_path / f"registry-{port}"
        root.mkdir()
        config: dict[str, Any] = {
            "version": 0.1, "log": {"level": "warn"},
            "storage": {"filesystem": {"rootdirectory": str(root / "data")}},
            "http": {"addr": f"127.0.0.1:{port}", "secret": unique("secret")},
        }
        if auth:
            (root / "htpasswd").write_text(HTPASSWD)
            config["auth"] = {"htpasswd": {"realm": "glt", "path": str(root / "htpasswd")}}
        (root / "config.yml").write_text(json.dumps(config))  # JSON is YAML
        log = (root / "log").open("wb")
        proc = subprocess.Popen([registry_binary, "serve", str(root / "config.yml")],
                                stdout=log, stderr=subprocess.STDOUT)
        procs.append((proc, log))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert proc.poll() is None, (root / "log").read_text()
            try:
                if requests.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code in (200,
                                                                                           401):
                    return f"127.0.0.1:{port}"
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise AssertionError(f"registry not up in 20 s:\n{(root / 'log').read_text()}")

    yield start
    for proc, log in procs:
        stop_process(proc)
        log.close()


@pytest.fixture
def small_image(docker_client: Any, standin_image: str,
                image_labels: dict[str, str]) -> Iterator[str]:
    """Two layers (the stand-in's and one of our own) under a unique tag, with the session's
    labels: not the 1 GB service image (a push of that costs minutes on a small box)."""
    tag = f"gpu-launcher/test-push:{unique('img')}"
    dockerfile = f"FROM {standin_image}\nRUN echo {tag} > /glt-push\n"
    docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag,
                               labels=image_labels, rm=True, forcerm=True)
    yield tag
    remove_image(docker_client, tag)


@pytest.fixture
def tiny_image(docker_client: Any, image_labels: dict[str, str]) -> Iterator[str]:
    """One file FROM scratch (a few hundred bytes to push), with the session's labels: for the
    tests of credentials and failures, where the layers are not the point."""
    tag = f"gpu-launcher/test-push:{unique('tiny')}"
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, data in (("Dockerfile", b"FROM scratch\nCOPY id /id\n"),
                           ("id", tag.encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    docker_client.images.build(fileobj=context, custom_context=True, tag=tag,
                               labels=image_labels, rm=True, forcerm=True)
    yield tag
    remove_image(docker_client, tag)


def _docker_config(path: Path, config: dict[str, Any]) -> dict[str, str]:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(config))
    return {"DOCKER_CONFIG": str(path)}


def test_push_then_pull_back_gives_the_same_image(docker_client: Any, registry: Registry,
                                                  small_image: str, tmp_path: Path) -> None:
    host = registry()
    dest = f"{host}/{unique('glt-push')}:v1"
    image = docker_client.images.get(small_image)
    layers = len(image.attrs["RootFS"]["Layers"])
    env = _docker_config(tmp_path / "docker", {})
    try:
        proc = run_launcher("push", "--image", small_image, dest, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr
        printed = DIGEST_LINE.fullmatch(proc.stdout.strip())
        assert printed is not None and printed["ref"] == dest, proc.stdout
        assert len([ln for ln in proc.stderr.splitlines() if LAYER_LINE.fullmatch(ln)]) == layers, \
            proc.stderr
        # What the registry holds under that tag is what the engine said it pushed.
        head = requests.head(f"http://{host}/v2/{dest.split('/', 1)[1].replace(':', '/manifests/')}",
                             headers={"Accept": "application/vnd.docker.distribution.manifest"
                                                ".v2+json"}, timeout=10)
        assert head.headers["Docker-Content-Digest"] == printed["digest"]

        remove_image(docker_client, dest)
        remove_image(docker_client, small_image)
        assert not docker_client.images.list(filters={"reference": small_image})
        pull = subprocess.run(["docker", "--config", env["DOCKER_CONFIG"], "pull", dest],
                              capture_output=True, text=True, timeout=300, check=False)
        assert pull.returncode == 0, pull.stderr
        assert docker_client.images.get(dest).id == image.id
        pulled = subprocess.run(["docker", "inspect", "--format", "{{index .RepoDigests 0}}",
                                 dest], capture_output=True, text=True, timeout=60, check=True)
        assert pulled.stdout.strip() == f"{dest.rpartition(':')[0]}@{printed['digest']}"
    finally:
        remove_image(docker_client, dest)


def _helper(bin_dir: Path) -> dict[str, str]:
    """A credential helper as the CLI runs one: ``docker-credential-NAME get``, the server on
    stdin, the credentials as JSON on stdout."""
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-glttest"
    helper.write_text("#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread -r server\n"
                      f'printf \'{{"ServerURL":"%s","Username":"{USER}","Secret":"{PASSWORD}"}}\''
                      ' "$server"\n')
    helper.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


@pytest.mark.parametrize("how", ["auths", "credential-helper"])
def test_push_uses_the_docker_config_credentials(docker_client: Any, registry: Registry,
                                                 tiny_image: str, tmp_path: Path,
                                                 how: str) -> None:
    host = registry(auth=True)
    dest = f"{host}/{unique('glt-auth')}:v1"
    if how == "auths":
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        env = _docker_config(tmp_path / "docker", {"auths": {host: {"auth": token}}})
    else:
        env = {**_docker_config(tmp_path / "docker", {"credHelpers": {host: "glttest"}}),
               **_helper(tmp_path / "bin")}
    try:
        proc = run_launcher("push", "--image", tiny_image, dest, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert DIGEST_LINE.fullmatch(proc.stdout.strip()), proc.stdout
    finally:
        remove_image(docker_client, dest)


def _failed_push(docker_client: Any, image: str, dest: str, tmp_path: Path,
                 timeout: float) -> list[str]:
    """Push IMAGE to DEST with no credentials, expecting exit 1 with one error line and one hint
    line (progress lines dropped); those two lines, for the caller's own checks."""
    try:
        proc = run_launcher("push", "--image", image, dest,
                            env=_docker_config(tmp_path / "docker", {}), timeout=timeout)
        left = docker_client.images.list(name=dest)  # the failed push untags what it tagged
    finally:
        remove_image(docker_client, dest)
    errors = [ln for ln in proc.stderr.splitlines() if not ln.startswith("launcher: pushing")]
    assert (proc.returncode, proc.stdout, len(errors)) == (1, "", 2), proc.stderr
    assert left == []
    assert errors[0].startswith(f"launcher: error: pushing {dest}: ")
    return errors


def test_push_without_credentials_is_refused_with_a_login_hint(docker_client: Any,
                                                               registry: Registry,
                                                               tiny_image: str,
                                                               tmp_path: Path) -> None:
    dest = f"{registry(auth=True)}/{unique('glt-denied')}:v1"
    errors = _failed_push(docker_client, tiny_image, dest, tmp_path, timeout=300)
    assert "no basic auth credentials" in errors[0]
    assert errors[1].startswith("hint: log in as the Docker CLI does (docker login REGISTRY)")


def test_push_to_a_registry_that_does_not_answer_fails_in_one_line(docker_client: Any,
                                                                   tiny_image: str,
                                                                   tmp_path: Path) -> None:
    dest = f"127.0.0.1:{free_port()}/{unique('glt-nobody')}:v1"
    errors = _failed_push(docker_client, tiny_image, dest, tmp_path, timeout=120)
    assert errors[0].endswith("connect: connection refused")
    assert errors[1].startswith("hint: check that the registry runs and the engine can reach it")


@pytest.mark.parametrize(("argv", "message"), [
    (["push", "--image", "gpu-launcher/none:1", "127.0.0.1:5000/x"],
     "launcher: error: image gpu-launcher/none:1 is not on the engine"),
    (["push", "127.0.0.1:5000/Upper"],
     ('launcher: error: invalid argument "127.0.0.1:5000/Upper" for "DEST": invalid reference '
      "format: repository name must be lowercase")),
], ids=["missing-image", "bad-dest"])
def test_push_bad_input_says_what_and_hints(docker_client: Any, argv: list[str],
                                            message: str) -> None:
    proc = run_launcher(*argv)
    lines = proc.stderr.splitlines()
    assert (proc.returncode, lines[-2]) == (2 if "DEST" in message else 1, message), proc.stderr
    assert lines[-1].startswith("hint: ")
