"""``launcher._cli.main`` in-process: its output streams, its exit codes and what --help says."""

from __future__ import annotations

import gc
import io
import subprocess
import sys
from typing import Any

import pytest

from launcher import cmd_status
from launcher._cli import main
from tests.conftest import ROOT
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


def test_a_command_loads_its_own_module_and_not_the_others() -> None:
    # A fresh interpreter: `launcher up` (here its --dry-run) never imports what render or push
    # need, and `launcher --help` still lists every command.
    code = ("import sys; from launcher._cli import main; "
            "main(['up', '--dry-run'], stdout=open('/dev/null', 'w'), stderr=sys.stderr); "
            "print(sorted(m for m in sys.modules if m.startswith('launcher.cmd_')))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=True)
    assert proc.stdout.strip() == "['launcher.cmd_up']"
    _, out, _ = run("--help")
    commands = out.split("COMMAND\n", 1)[1].split("\n\n")[0]
    listed = [line.split()[0] for line in commands.splitlines()]
    assert listed == ["probe", "init", "build", "up", "status", "logs", "down", "push", "render",
                      "version"]


def test_a_typo_is_answered_against_every_command() -> None:
    code, out, err = run("upp")
    assert (code, out) == (2, "")
    assert err.splitlines()[0] == (
        "launcher: error: argument COMMAND: invalid choice: 'upp' (choose from 'probe', 'init', "
        "'build', 'up', 'status', 'logs', 'down', 'push', 'render', 'version')")


@pytest.mark.parametrize("collecting", [True, False], ids=["gc-on", "gc-off"])
def test_main_leaves_the_collector_as_it_found_it(collecting: bool) -> None:
    was = gc.isenabled()
    try:
        (gc.enable if collecting else gc.disable)()
        run("up", "--bogus")
        assert gc.isenabled() is collecting
    finally:
        (gc.enable if was else gc.disable)()
