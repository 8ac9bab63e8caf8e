"""``launcher._cli.main`` in-process: its output streams, its exit codes and what --help says."""

from __future__ import annotations

import io
from typing import Any

import pytest

from launcher import cmd_status
from launcher._cli import main
from tests.fakenvml import FakeGpu, FakeNvml, loader


def run(*argv: str, **kwargs: Any) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err, **kwargs)
    return code, out.getvalue(), err.getvalue()


def test_main_writes_data_and_diagnostics_to_the_streams_it_is_given(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run("probe", "--json", load=loader(FakeNvml([FakeGpu()])))
    assert (code, out.startswith("{\n"), err) == (0, True, "")
    code, out, err = run("up", "--bogus")
    assert (code, out) == (2, "")
    assert err == ("launcher: error: unrecognized arguments: --bogus\n"
                   "hint: see 'launcher --help'\n")
    assert capsys.readouterr() == ("", "")  # nothing went to the process's own streams


def test_help_lists_every_exit_code() -> None:
    code, out, _ = run("--help")
    assert code == 0
    assert "Exit codes: 0 ok, 1 failure, 2 usage, 130 interrupted (Ctrl-C)." in " ".join(
        out.split())


def test_ctrl_c_exits_130_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*_: Any, **__: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cmd_status, "connect", interrupted)
    assert run("status") == (130, "", "launcher: interrupted\n")
