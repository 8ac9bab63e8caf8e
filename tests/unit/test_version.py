"""``launcher --version`` and ``launcher version --json``: the version, and what it speaks."""

from __future__ import annotations

import json

import pytest

from launcher import __version__
from launcher._cli import main
from launcher._cuda import TORCH_VERSION, cuda_table
from launcher._plan import ENGINE_API_VERSION


@pytest.mark.parametrize("argv", [["--version"], ["version"]], ids=["flag", "command"])
def test_the_version_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 0
    assert capsys.readouterr() == (f"launcher {__version__}\n", "")


def test_version_json_names_the_torch_cuda_builds_and_engine_api(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    table = cuda_table()
    assert shown == {
        "launcher": __version__,
        "torch": TORCH_VERSION,
        "torch_cpu_index": table.cpu_index_url,
        "cuda": [{"wheel": v.wheel, "cuda": f"{v.cuda[0]}.{v.cuda[1]}", "stable": v.stable,
                  "index_url": v.index_url} for v in table.variants],
        "engine_api": ENGINE_API_VERSION,
    }
