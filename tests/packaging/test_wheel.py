"""The wheel and sdist as a user gets them: ``python -m build`` of the checkout, ``twine check``,
``pipx install``, and the installed launcher planning, from any directory, the very image a
checkout plans (the same content-hash tag: an image built either way is reused by the other).
The whole way in on the real engine is tests/docker/test_installed.py."""

from __future__ import annotations

import json
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from launcher import __version__
from launcher._build import CONTEXT_FILES
from tests.conftest import ROOT
from tests.packaging.dist import Dist, build_dist, clean_env, make_venv, run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    return build_dist(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def installed(dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel (its base dependencies from PyPI)."""
    return make_venv(tmp_path_factory.mktemp("installed") / "venv", dist.wheel)


def test_the_wheel_and_the_sdist_pass_twine_check(dist: Dist) -> None:
    checked = run(dist.tools / "bin" / "twine", "check", "--strict", dist.sdist, dist.wheel)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_wheel_is_the_packages_and_the_build_context_without_tests_or_caches(
        dist: Dist) -> None:
    names = zipfile.ZipFile(dist.wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"launcher", "service", f"gpu_launcher-{__version__}.dist-info"}
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".pyo"))]
    assert {f"launcher/data/context/{name}" for name in CONTEXT_FILES} <= set(names)
    assert "service/models/digits.pt" in names  # the default model
    assert dist.wheel.stat().st_size < 1 << 20


def test_the_sdist_carries_the_build_context_and_no_tests(dist: Dist) -> None:
    with tarfile.open(dist.sdist) as tar:
        names = {n.partition("/")[2] for n in tar.getnames()}
    assert set(CONTEXT_FILES) | {"setup.py", "MANIFEST.in", "pyproject.toml"} <= names
    assert not [n for n in names if n.startswith(("tests/", "docs/", "benchmarks/"))
                or "__pycache__" in n]


def test_pipx_installs_the_wheel(dist: Dist, tmp_path: Path) -> None:
    env = {"PIPX_HOME": str(tmp_path / "pipx"), "PIPX_BIN_DIR": str(tmp_path / "bin"),
           "PIPX_MAN_DIR": str(tmp_path / "man")}
    installed = run(dist.tools / "bin" / "pipx", "install", dist.wheel, env=env)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    version = run(tmp_path / "bin" / "launcher", "--version", cwd=tmp_path)
    assert (version.returncode, version.stdout) == (0, f"launcher {__version__}\n")


def test_launcher_version_says_what_it_speaks(installed: Path, tmp_path: Path) -> None:
    env = clean_env(installed)
    shown = run(installed / "bin" / "launcher", "version", "--json", env=env, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    checkout = run(sys.executable, "-m", "launcher", "version", "--json",
                   cwd=ROOT)
    assert json.loads(shown.stdout) == json.loads(checkout.stdout)
    assert json.loads(shown.stdout)["launcher"] == __version__


# The plans whose images must be the same from the checkout and from the wheel.
PLANS = [
    ("cpu", []),
    ("gpu", ["--gpus", "all", "--no-probe"]),
    ("wheelhouse", ["--wheelhouse", "/nonexistent/wheels"]),
]


@pytest.mark.parametrize("flags", [f for _, f in PLANS], ids=[i for i, _ in PLANS])
def test_the_installed_launcher_plans_the_checkouts_image(installed: Path, tmp_path: Path,
                                                          flags: list[str]) -> None:
    def image(*launcher: str | Path, cwd: Path) -> str:
        planned = run(*launcher, "up", "--dry-run", "--json", *flags, cwd=cwd,
                      env=clean_env(installed))
        assert planned.returncode == 0, planned.stderr
        return str(json.loads(planned.stdout)["image"])

    outside = tmp_path / "anywhere"
    outside.mkdir()
    from_wheel = image(installed / "bin" / "launcher", cwd=outside)
    from_checkout = image(sys.executable, "-m", "launcher", cwd=ROOT)
    assert from_wheel == from_checkout
    assert from_wheel.startswith("gpu-launcher/service:")


def test_render_k8s_runs_from_the_installed_launcher(installed: Path, tmp_path: Path) -> None:
    rendered = run(installed / "bin" / "launcher", "render", "k8s", env=clean_env(installed),
                   cwd=tmp_path)
    assert rendered.returncode == 0, rendered.stderr
    assert "kind: Deployment" in rendered.stdout
