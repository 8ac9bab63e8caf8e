"""The launcher as a tool you install, the whole way in, on the real engine: the wheel built from
the checkout, installed into a fresh venv, then in a directory outside the repository
``launcher --version``, ``launcher init proj``, ``cd proj && launcher up`` with nothing but its
launcher.toml (plus this machine's wheelhouse and stand-in base image), ``/predict`` answering
as the starter promises, ``launcher push`` of that image to a registry on 127.0.0.1, an edit to
predict.py rebuilding only the code layer, ``launcher build`` from the wheel's build context,
``launcher down``.

The service image it plans is the one the checkout built (``cpu_image``: same sources, same
content-hash tag), so it is reused, not rebuilt.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from launcher import __version__
from launcher._starter import STARTER_EXAMPLE
from tests.conftest import ROOT, free_port, unique
from tests.docker.conftest import BUILD_TIMEOUT, BuiltImage, remove_image, remove_predictor_images
from tests.docker.test_lifecycle import cleanup
from tests.docker.test_push import Registry, registry, registry_binary  # noqa: F401 (fixtures)
from tests.packaging.dist import build_dist, clean_env, make_venv, run

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# up's progress line for each finished build step (launcher._build.BuildProgress).
_STEP = re.compile(r"step \d+/\d+ (?P<instruction>.+): (?P<how>cached|done in [\d.]+s)$")


def built_steps(stderr: str, tag_prefix: str) -> list[tuple[str, bool]]:
    """(instruction, cached) of each step of the build of the image named ``tag_prefix...``."""
    lines = stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if f"building {tag_prefix}" in line)
    found = (_STEP.search(line) for line in lines[start + 1:])
    return [(m["instruction"], m["how"] == "cached") for m in found if m]


def test_installed_launcher_init_up_edit_down(docker_client: Any, cpu_image: BuiltImage,
                                              wheelhouse: Path, standin_image: str,
                                              image_labels: dict[str, str],
                                              registry: Registry,  # noqa: F811 (the fixture)
                                              tmp_path_factory: pytest.TempPathFactory) -> None:
    base = tmp_path_factory.mktemp("installed")
    assert not base.resolve().is_relative_to(ROOT)
    took: dict[str, float] = {}
    started = time.monotonic()
    dist = build_dist(base / "dist")
    took["wheel"] = time.monotonic() - started
    started = time.monotonic()
    venv = make_venv(base / "venv", dist.wheel)
    took["install"] = time.monotonic() - started
    env = clean_env(venv)
    launcher = venv / "bin" / "launcher"
    work = base / "work"
    work.mkdir()

    version = run(launcher, "--version", cwd=work, env=env)
    assert (version.returncode, version.stdout) == (0, f"launcher {__version__}\n")
    made = run(launcher, "init", "proj", cwd=work, env=env)
    assert made.returncode == 0, made.stderr
    assert made.stderr.splitlines()[-1].strip() == "cd proj && launcher up"
    proj = work / "proj"
    # This run's own name, port and labels, in the file as a user would write them.
    name, port = unique("glt-installed"), free_port()
    labels = "".join(f"{json.dumps(k)} = {json.dumps(v)}\n" for k, v in image_labels.items())
    with (proj / "launcher.toml").open("a") as toml:
        toml.write(f'name = "{name}"\npublish = ["127.0.0.1:{port}:8000"]\n[label]\n{labels}')
    machine = ("--wheelhouse", str(wheelhouse), "--base-image", standin_image)
    url = f"http://127.0.0.1:{port}"
    try:
        started = time.monotonic()
        first = run(launcher, "up", *machine, cwd=proj, env=env, timeout=BUILD_TIMEOUT)
        took["up"] = time.monotonic() - started
        assert first.returncode == 0, first.stderr[-4000:]
        assert first.stdout == url + "\n"
        # The checkout's image, same tag: reused, not built again.
        assert f"launcher: image {cpu_image.tag} is present\n" in first.stderr, first.stderr[-4000:]
        assert f"building {cpu_image.tag}" not in first.stderr
        answer = requests.post(url + "/predict", data=STARTER_EXAMPLE, timeout=10)
        assert answer.json() == {"predictions": [1], "scores": [[0.5, 2.0, 1.0]]}
        # push, from the same file, pushes the image up runs.
        dest = f"{registry()}/{name}:1"
        pushed = run(launcher, "push", dest, *machine, cwd=proj, env=env, timeout=BUILD_TIMEOUT)
        remove_image(docker_client, dest)
        assert pushed.returncode == 0, pushed.stderr[-4000:]
        running = docker_client.containers.get(name).image.tags
        assert f"launcher: pushing {running[0]} " in pushed.stderr
        assert pushed.stdout.startswith(f"{dest}@sha256:")

        predict = proj / "predict.py"
        predict.write_text(predict.read_text().replace("[0.0, 0.0, 1.0]]", "[0.0, 0.0, 4.0]]"))
        started = time.monotonic()
        again = run(launcher, "up", *machine, cwd=proj, env=env, timeout=BUILD_TIMEOUT)
        took["rebuild"] = time.monotonic() - started
        assert again.returncode == 0, again.stderr[-4000:]
        built_in = re.search(r"built gpu-launcher/service:predictor-\w+ in ([\d.]+)s", again.stderr)
        assert built_in is not None, again.stderr[-4000:]
        took["code layer build"] = float(built_in[1])
        steps = built_steps(again.stderr, "gpu-launcher/service:predictor-")
        code = next(i for i, (instruction, _) in enumerate(steps)
                    if instruction.startswith("COPY predictor/code/"))
        start = next(i for i, (instruction, _) in enumerate(steps)
                     if instruction.startswith("FROM")) + 1  # ARG and FROM make no layer
        assert all(cached for _, cached in steps[start:code]), steps
        assert not steps[code][1], steps
        answer = requests.post(url + "/predict", data=STARTER_EXAMPLE, timeout=10)
        assert answer.json() == {"predictions": [2], "scores": [[0.5, 2.0, 4.0]]}

        # launcher build from the wheel's context, in a directory that is not a checkout, with
        # one more label (a new tag, so it builds): every COPY and RUN layer comes from the
        # checkout's build cache, i.e. the engine got the very same files.
        built = run(launcher, "build", "--json", *machine, "--label", f"{name}=1",
                    *[a for k, v in image_labels.items() for a in ("--label", f"{k}={v}")],
                    cwd=work, env=env, timeout=BUILD_TIMEOUT)
        assert built.returncode == 0, built.stderr[-4000:]
        result = json.loads(built.stdout)
        remove_image(docker_client, result["tag"])
        assert result["built"] is True and result["tag"] != cpu_image.tag
        work_steps = [s for s in result["steps"] if s["instruction"].split()[0] in ("COPY", "RUN")]
        assert work_steps and all(s["cached"] for s in work_steps), result["steps"]

        stopped = run(launcher, "down", "--volumes", "-t", "2", cwd=proj, env=env, timeout=120)
        assert stopped.returncode == 0, stopped.stderr
        assert not docker_client.containers.list(all=True, filters={"name": f"^{name}$"})
    finally:
        run(launcher, "down", "--volumes", "-t", "2", cwd=proj, env=env, timeout=120)
        cleanup(docker_client, name)
        remove_predictor_images(docker_client, image_labels)
        print("installed launcher, seconds: "
              + ", ".join(f"{k} {v:.1f}" for k, v in took.items())
              + f"; wheel {dist.wheel.stat().st_size // 1024} KiB", file=sys.stderr)
