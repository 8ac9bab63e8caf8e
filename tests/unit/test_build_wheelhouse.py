"""The offline wheelhouse, pure: the image probe, pip's arguments, fill-only-what-is-missing."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from launcher._errors import LauncherError, UsageError
from launcher._wheelhouse import (
    PythonTarget,
    download_args,
    fill_wheelhouse,
    offline_check_args,
    parse_probe,
    parse_python_version,
    torch_wheel_variants,
)


@pytest.mark.parametrize(
    ("output", "explicit", "expected"),
    [
        ("python=3.11\nmachine=x86_64\nglibc=2.36\n", None, PythonTarget("3.11", "x86_64", 36)),
        ("os=ubuntu-24.04\nmachine=x86_64\nglibc=2.39\n", None,
         PythonTarget("3.12", "x86_64", 39)),
        ("os=debian-12\nmachine=aarch64\nglibc=2.36\n", None, PythonTarget("3.11", "aarch64", 36)),
        ("python=3.11\nmachine=x86_64\nglibc=2.36\n", "3.12", PythonTarget("3.12", "x86_64", 36)),
        ("os=rocky-9\nmachine=x86_64\nglibc=2.34\n", "3.9", PythonTarget("3.9", "x86_64", 34)),
    ],
    ids=["python", "ubuntu-noble-no-python", "debian-arm", "explicit-wins", "explicit-unknown-os"],
)
def test_parse_probe(output: str, explicit: str | None, expected: PythonTarget) -> None:
    assert parse_probe(output, "img", explicit) == expected


@pytest.mark.parametrize(
    ("output", "message", "hint"),
    [
        ("os=rocky-9\nmachine=x86_64\nglibc=2.34\n",
         ("cannot tell which Python image img runs (probe said: "
         "'os=rocky-9\\nmachine=x86_64\\nglibc=2.34')"),
         "pass --python-version 3.X"),
        ("python=3.11\nmachine=s390x\nglibc=2.36\n",
         "image img runs on s390x, not x86_64 or aarch64",
         "build the wheelhouse on a host of the image's platform"),
        ("python=3.12\nmachine=x86_64\nglibc=\n",
         "image img has no glibc (probe said glibc='')",
         "manylinux wheels need a glibc base image (not Alpine/musl)"),
    ],
    ids=["unknown-os", "machine", "musl"],
)
def test_parse_probe_errors(output: str, message: str, hint: str) -> None:
    with pytest.raises(LauncherError) as info:
        parse_probe(output, "img")
    assert (info.value.message, info.value.hint) == (message, hint)


@pytest.mark.parametrize(
    ("value", "ok"),
    [("3.11", True), ("3.9", True), ("3", False), ("2.7", False), ("3.11.2", False),
     ("py3.11", False)],
    ids=lambda v: str(v),
)
def test_parse_python_version(value: str, ok: bool) -> None:
    if ok:
        assert parse_python_version(value) == value
        return
    with pytest.raises(UsageError) as info:
        parse_python_version(value)
    assert info.value.message == (
        f'invalid argument "{value}" for "--python-version" flag: expected 3.X')
    assert info.value.hint == "pass the image's python3 version, e.g. --python-version 3.12"


def test_platforms_cover_every_manylinux_the_glibc_runs() -> None:
    assert PythonTarget("3.11", "x86_64", 19).platforms() == [
        "manylinux_2_19_x86_64", "manylinux_2_18_x86_64", "manylinux_2_17_x86_64",
        "manylinux2014_x86_64", "linux_x86_64",
    ]


TARGET = PythonTarget("3.12", "aarch64", 17)
PLATFORM_ARGS = ["--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
                 "--abi", "cp312", "--platform", "manylinux_2_17_aarch64",
                 "--platform", "manylinux2014_aarch64", "--platform", "linux_aarch64"]


def test_offline_check_args_never_touch_an_index() -> None:
    assert offline_check_args(Path("r.lock"), Path("wh"), TARGET) == [
        "download", "--no-index", "--find-links", "wh", "--dest", "wh", *PLATFORM_ARGS,
        "-r", "r.lock", "--quiet"]


def test_download_args_add_the_torch_index() -> None:
    assert download_args(Path("r.lock"), Path("wh"), TARGET, ["https://idx/cu128"]) == [
        "download", "--dest", "wh", "--find-links", "wh",
        "--extra-index-url", "https://idx/cu128", *PLATFORM_ARGS,
        "-r", "r.lock", "--progress-bar", "off"]


@pytest.mark.parametrize(
    ("names", "variants"),
    [
        (["torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"], {"cpu"}),
        (["torch-2.13.0+cu128-cp312-cp312-manylinux_2_28_x86_64.whl",
          "torch-2.13.0-cp312-cp312-manylinux_2_28_x86_64.whl"], {"cu128", ""}),
        (["numpy-2.0-cp311-none-any.whl"], set()),
    ],
    ids=["cpu", "cuda-and-pypi", "none"],
)
def test_torch_wheel_variants(tmp_path: Path, names: list[str], variants: set[str]) -> None:
    for name in names:
        (tmp_path / name).write_text("")
    assert torch_wheel_variants(tmp_path) == variants


class FakePip:
    """Records pip's argument lists; ``check_rc`` answers the offline check, a download adds
    ``new`` to the destination."""

    def __init__(self, check_rc: int, download_rc: int = 0, new: tuple[str, ...] = ()) -> None:
        self.calls: list[list[str]] = []
        self.check_rc, self.download_rc, self.new = check_rc, download_rc, new

    def __call__(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(args)
        if "--no-index" in args:
            return subprocess.CompletedProcess(args, self.check_rc, "", "missing torch")
        dest = Path(args[args.index("--dest") + 1])
        for name in self.new:
            (dest / name).write_text("")
        err = "" if self.download_rc == 0 else "noise\nERROR: No matching distribution\n"
        return subprocess.CompletedProcess(args, self.download_rc, "", err)


def test_a_complete_wheelhouse_downloads_nothing(tmp_path: Path) -> None:
    pip, logged = FakePip(check_rc=0), []
    added = fill_wheelhouse(tmp_path / "wh", Path("r.lock"), TARGET, run=pip, log=logged.append)
    assert added == [] and len(pip.calls) == 1
    assert logged == [f"wheelhouse {tmp_path / 'wh'}: complete for Python 3.12 aarch64"]


def test_a_missing_wheel_is_downloaded(tmp_path: Path) -> None:
    pip = FakePip(check_rc=1, new=("a-1-py3-none-any.whl",))
    added = fill_wheelhouse(tmp_path / "wh", Path("r.lock"), TARGET, None, run=pip)
    assert added == ["a-1-py3-none-any.whl"]
    assert pip.calls[1] == download_args(Path("r.lock"), tmp_path / "wh", TARGET)


def test_an_unreachable_torch_index_is_left_out(tmp_path: Path) -> None:
    pip, logged = FakePip(check_rc=1), []
    # Port 9 (discard) on loopback: refused at once, no traffic leaves the host.
    fill_wheelhouse(tmp_path, Path("r.lock"), TARGET, "http://127.0.0.1:9/whl", run=pip,
                    log=logged.append)
    assert "--extra-index-url" not in pip.calls[1]
    assert logged[0] == ("wheelhouse: torch index http://127.0.0.1:9/whl unreachable; "
                         "using pip's own indexes")


def test_a_failed_download_says_why(tmp_path: Path) -> None:
    with pytest.raises(LauncherError) as info:
        fill_wheelhouse(tmp_path, Path("r.lock"), TARGET, run=FakePip(check_rc=1, download_rc=1))
    assert info.value.message == (
        f"filling the wheelhouse {tmp_path} failed: ERROR: No matching distribution")
    assert info.value.hint == (
        "check the network to the package index, or fill the directory on a connected host "
        "(launcher build --wheelhouse DIR there, then copy DIR)")


def test_a_gpu_wheelhouse_fetches_torch_by_its_local_version() -> None:
    # Dockerfile.gpu installs torch==X+cu126: the wheelhouse asks for exactly that build, so a
    # variant the index lacks fails at the fill, by name, not at the image build.
    pins = ["torch==2.13.0+cu126"]
    assert offline_check_args(Path("r.lock"), Path("wh"), TARGET, pins)[-2:] == [
        "torch==2.13.0+cu126", "--quiet"]
    args = download_args(Path("r.lock"), Path("wh"), TARGET, ["https://idx/cu126"], pins)
    assert args[args.index("-r"):] == ["-r", "r.lock", "torch==2.13.0+cu126", "--progress-bar",
                                       "off"]
