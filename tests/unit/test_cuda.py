"""The wheel/CUDA table and the choice: the newest stable torch wheel that has kernels for every
selected GPU and that the driver runs, on an nvidia/cuda image the driver starts.

Every row names the facts it rests on (``FACTS``: entries of launcher/data/cuda.json, each with
its source, checked by ``test_every_fact_a_row_uses_is_cited``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from launcher._cuda import (
    CudaChoice,
    GpuNeed,
    NoCudaFits,
    choose_cuda,
    cuda_table,
    parse_cuda_version,
    wheel_coverage,
)
from tests.conftest import error_text

DATA = Path(__file__).resolve().parents[2] / "launcher/data/cuda.json"

P100 = GpuNeed("Tesla P100-PCIE-16GB", (6, 0))
GTX1080 = GpuNeed("NVIDIA GeForce GTX 1080", (6, 1))
GTX980 = GpuNeed("NVIDIA GeForce GTX 980", (5, 2))
V100 = GpuNeed("Tesla V100-SXM2-16GB", (7, 0))
T4 = GpuNeed("Tesla T4", (7, 5))
A100 = GpuNeed("NVIDIA A100-SXM4-40GB", (8, 0))
RTX4090 = GpuNeed("NVIDIA GeForce RTX 4090", (8, 9))
H100 = GpuNeed("NVIDIA H100 80GB HBM3", (9, 0))
B200 = GpuNeed("NVIDIA B200", (10, 0))
RTX5090 = GpuNeed("NVIDIA GeForce RTX 5090", (12, 0))
THOR = GpuNeed("NVIDIA Jetson Thor", (11, 0))
K80 = GpuNeed("Tesla K80", (3, 7))
GTX680 = GpuNeed("NVIDIA GeForce GTX 680", (3, 0))
FUTURE = GpuNeed("NVIDIA Future", (15, 0))

IMG = "nvidia/cuda:{}-runtime-ubuntu{}"


def _fact(data: dict[str, Any], name: str) -> dict[str, Any]:
    """A named fact → its row in cuda.json (``cu126``, ``compat-12``, ``release-12.6``)."""
    torch = data["torch"][0]
    if name.startswith("compat-"):
        return next(m for m in data["minor_version_compatibility"]
                    if m["major"] == int(name[7:]))
    if name.startswith("release-"):
        return next(r for r in data["cuda_releases"] if r["cuda"] == name[8:])
    if name == "unprobed":
        return {"source": torch["unprobed_default_why"]}
    return next(v for v in torch["variants"] if v["wheel"] == name)  # type: ignore[no-any-return]


# (id, driver, driver CUDA, GPUs, --cuda, image, wheel, facts)
CHOICES = [
    ("pascal-volta-580", "580.65.06", (13, 0), [P100, GTX1080, V100], None,
     IMG.format("12.6.3", "24.04"), "cu126", ("cu126", "cu130", "release-12.6")),
    ("hopper-580", "580.65.06", (13, 0), [H100], None, IMG.format("13.0.2", "24.04"), "cu130",
     ("cu130", "release-13.0")),
    ("hopper-volta-580", "580.65.06", (13, 0), [H100, V100], None,
     IMG.format("12.6.3", "24.04"), "cu126", ("cu126", "cu130")),
    ("ada-550-minor-compat", "550.54.15", (12, 4), [RTX4090], None,
     IMG.format("12.4.1", "22.04"), "cu126", ("cu126", "compat-12", "release-12.4")),
    ("hopper-535-minor-compat", "535.104.05", (12, 2), [H100], None,
     IMG.format("12.2.2", "22.04"), "cu126", ("cu126", "compat-12", "release-12.2")),
    ("hopper-560-native", "560.35.05", (12, 6), [H100], None, IMG.format("12.6.3", "24.04"),
     "cu126", ("cu126", "release-12.6")),
    ("hopper-570-no-cu128-any-more", "570.124.06", (12, 8), [H100], None,
     IMG.format("12.6.3", "24.04"), "cu126", ("cu126", "compat-13")),
    ("blackwell-580", "580.65.06", (13, 0), [B200, RTX5090], None,
     IMG.format("13.0.2", "24.04"), "cu130", ("cu130",)),
    ("turing-580", "580.65.06", (13, 0), [T4], None, IMG.format("13.0.2", "24.04"), "cu130",
     ("cu130",)),
    ("future-gpu-ptx-native", "580.65.06", (13, 0), [FUTURE], None,
     IMG.format("13.0.2", "24.04"), "cu130", ("cu130",)),
    ("driver-cuda-from-table", "575.57.08", None, [A100], None, IMG.format("12.6.3", "24.04"),
     "cu126", ("cu126", "release-12.9", "compat-13")),
    ("pinned-cu126-on-hopper", "580.65.06", (13, 0), [H100], (12, 6),
     IMG.format("12.6.3", "24.04"), "cu126", ("cu126",)),
    ("experimental-only-when-pinned", "580.65.06", (13, 0), [H100], (13, 2),
     IMG.format("13.0.2", "24.04"), "cu132", ("cu132", "compat-13", "release-13.0")),
    ("no-probe", None, None, [], None, IMG.format("12.6.3", "24.04"), "cu126",
     ("unprobed", "cu126")),
    ("no-probe-pinned", None, None, [], (13, 0), IMG.format("13.0.2", "24.04"), "cu130",
     ("cu130",)),
]


@pytest.mark.parametrize("driver, driver_cuda, gpus, pinned, image, wheel, facts",
                         [c[1:] for c in CHOICES], ids=[c[0] for c in CHOICES])
def test_choose_cuda(driver: str | None, driver_cuda: tuple[int, int] | None,
                     gpus: list[GpuNeed], pinned: tuple[int, int] | None, image: str, wheel: str,
                     facts: tuple[str, ...]) -> None:
    choice = choose_cuda(cuda_table(), driver, driver_cuda, gpus, pinned)
    assert isinstance(choice, CudaChoice)
    assert (choice.image, choice.wheel, choice.torch) == (image, wheel, f"2.13.0+{wheel}")
    assert choice.index_url == f"https://download.pytorch.org/whl/{wheel}"
    assert choice.experimental is (wheel == "cu132")


@pytest.mark.parametrize("driver, driver_cuda, gpus, explanation", [
    ("580.65.06", (13, 0), [V100],
     ("driver 580.65.06 runs CUDA ≤ 13.0; GPUs: Tesla V100-SXM2-16GB (sm_70); torch 2.13.0 stable "
     "wheels: cu130 (sm_75…sm_120+PTX), cu126 (sm_50…sm_90); cu130: no code for sm_70; cu126 "
     "runs natively → nvidia/cuda:12.6.3-runtime-ubuntu24.04 with cu126 (torch 2.13.0+cu126)")),
    ("550.54.15", (12, 4), [RTX4090],
     ("driver 550.54.15 runs CUDA ≤ 12.4; GPUs: NVIDIA GeForce RTX 4090 (sm_89); torch 2.13.0 "
     "stable wheels: cu130 (sm_75…sm_120+PTX), cu126 (sm_50…sm_90); cu130: needs a driver ≥ 580; "
     "cu126 runs by minor-version compatibility (12.x on ≥ 525.60.13) → "
     "nvidia/cuda:12.4.1-runtime-ubuntu22.04 with cu126 (torch 2.13.0+cu126)")),
    (None, None, [],
     ("driver and GPUs unknown: cu126 by default (sm_50…sm_90, any driver ≥ 525.60.13; pin "
     "another with --cuda) → nvidia/cuda:12.6.3-runtime-ubuntu24.04 with cu126 "
     "(torch 2.13.0+cu126)")),
], ids=["volta-580", "ada-550", "no-probe"])
def test_choose_cuda_explains(driver: str | None, driver_cuda: tuple[int, int] | None,
                              gpus: list[GpuNeed], explanation: str) -> None:
    assert choose_cuda(cuda_table(), driver, driver_cuda, gpus).explanation == explanation


# (id, driver, driver CUDA, GPUs, --cuda, end of the explanation, hint, facts)
REFUSALS = [
    ("consumer-blackwell-575", "575.57.08", (12, 9), [RTX5090], None,
     ("cu130: needs a driver ≥ 580; cu126: no code for sm_120 → none fits: install an NVIDIA "
     "driver ≥ 580"),
     "install an NVIDIA driver ≥ 580 (for cu130), or run on CPU without --gpus",
     ("cu126", "cu130", "compat-13")),
    ("b200-570", "570.124.06", (12, 8), [B200], None, None,
     "install an NVIDIA driver ≥ 580 (for cu130), or run on CPU without --gpus",
     ("cu126", "cu130", "compat-13")),
    ("turing-520", "520.61.05", (11, 8), [T4], None, None,
     "install an NVIDIA driver ≥ 525.60.13 (for cu126), or run on CPU without --gpus",
     ("cu126", "compat-12")),
    ("sm30", "470.256.02", (11, 4), [GTX680], None,
     ("→ NVIDIA GeForce GTX 680 (sm_30) is older than every wheel of torch 2.13.0 (oldest code: "
     "sm_50 in cu126)"),
     ("no torch 2.13.0 wheel has kernels for NVIDIA GeForce GTX 680 (sm_30): leave it out with "
      "--gpus '\"device=...\"', or run on CPU without --gpus"), ("cu126",)),
    ("sm37", "580.65.06", (13, 0), [H100, K80], None,
     "→ Tesla K80 (sm_37) is older than every wheel of torch 2.13.0 (oldest code: sm_50 in cu126)",
     ("no torch 2.13.0 wheel has kernels for Tesla K80 (sm_37): leave it out with "
      "--gpus '\"device=...\"', or run on CPU without --gpus"), ("cu126",)),
    ("thor-sm110-on-x86", "580.65.06", (13, 0), [THOR], None,
     ("→ NVIDIA Jetson Thor (sm_110) is not covered by any wheel of torch 2.13.0 (oldest code: "
     "sm_50 in cu126)"), None, ("cu126", "cu130", "cu132")),
    ("maxwell-with-blackwell", "580.65.06", (13, 0), [GTX980, RTX5090], None,
     ("cu130: no code for sm_52; cu126: no code for sm_120 → no stable wheel covers the selected "
     "GPUs together"),
     ("no stable torch 2.13.0 wheel has kernels for all of them; select GPUs of one generation "
      "with --gpus '\"device=...\"', or run on CPU without --gpus"), ("cu126", "cu130")),
    ("pinned-cu130-on-volta", "580.65.06", (13, 0), [V100], (13, 0), None,
     "drop --cuda to let the launcher choose (wheels that cover them: --cuda 12.6)",
     ("cu126", "cu130")),
    ("pinned-cu130-on-570", "570.124.06", (12, 8), [H100], (13, 0), None,
     "install an NVIDIA driver ≥ 580 (for cu130), or run on CPU without --gpus", ("compat-13",)),
    ("pinned-cu132-ptx-needs-native", "580.65.06", (13, 0), [FUTURE], (13, 2),
     ("cu132: needs a driver that runs CUDA 13.2 natively (PTX JIT needs its CUDA natively) → none "
     "fits: install an NVIDIA driver that runs CUDA 13.2 natively"), None, ("cu132",)),
    ("pinned-no-wheel", None, None, [], (12, 8), "torch 2.13.0 has no wheels for CUDA 12.8",
     "pick one of --cuda 12.6, 13.0, 13.2", ("cu126", "cu130", "cu132")),
]


@pytest.mark.parametrize("driver, driver_cuda, gpus, pinned, explanation_end, hint, facts",
                         [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_choose_cuda_refuses_naming_what_to_do(
        driver: str | None, driver_cuda: tuple[int, int] | None, gpus: list[GpuNeed],
        pinned: tuple[int, int] | None, explanation_end: str | None, hint: str | None,
        facts: tuple[str, ...]) -> None:
    with pytest.raises(NoCudaFits) as info:
        choose_cuda(cuda_table(), driver, driver_cuda, gpus, pinned)
    if hint is not None:
        assert info.value.hint == hint
    if explanation_end is not None:
        assert info.value.explanation.endswith(explanation_end), info.value.explanation


def test_every_fact_a_row_uses_is_cited() -> None:
    data = json.loads(DATA.read_text())
    used = {f for row in CHOICES for f in row[-1]} | {f for row in REFUSALS for f in row[-1]}
    for name in sorted(used):
        source = _fact(data, name)["source"]
        assert source and ("http" in source or "@" in source or "RELEASE.md" in source
                           or name == "unprobed"), (name, source)


def test_table_is_consistent() -> None:
    table = cuda_table()
    assert [r.cuda for r in table.releases] == sorted(r.cuda for r in table.releases)
    assert [(v.wheel, v.stable) for v in table.variants] == [
        ("cu126", True), ("cu130", True), ("cu132", False)]
    for variant in table.variants:
        assert variant.index_url == f"https://download.pytorch.org/whl/{variant.wheel}"
        assert variant.wheel == "cu" + "".join(map(str, variant.cuda))
        assert table.image(variant, None) is not None  # every variant has an image
        assert table.compat_floor(variant.cuda[0]) is not None
        assert list(variant.sass) == sorted(variant.sass)
    assert table.unprobed_default in {v.wheel for v in table.variants if v.stable}


@pytest.mark.parametrize("capability, wheels", [
    ((6, 1), [("cu126", "sm_60")]),
    ((7, 0), [("cu126", "sm_70")]),
    ((8, 9), [("cu126", "sm_86"), ("cu130", "sm_86"), ("cu132", "sm_86")]),
    ((10, 3), [("cu130", "sm_100"), ("cu132", "sm_100")]),
    ((12, 1), [("cu130", "sm_120"), ("cu132", "sm_120")]),
    ((15, 0), [("cu130", "PTX"), ("cu132", "PTX")]),
    ((3, 7), []),
], ids=["pascal-sm61", "volta", "ada-runs-sm86", "b300-runs-sm100", "gb10-runs-sm120",
        "future-ptx", "kepler"])
def test_wheel_coverage_same_major_minor_le_or_ptx(capability: tuple[int, int],
                                                   wheels: list[tuple[str, str]]) -> None:
    found = [(v.wheel, how) for v, how in wheel_coverage(cuda_table(), capability)]
    assert found == wheels


@pytest.mark.parametrize("text, message", [
    ("12", "invalid CUDA version '12': expected MAJOR.MINOR, e.g. 12.6"),
    ("12.x", "invalid CUDA version '12.x': expected MAJOR.MINOR, e.g. 12.6"),
    ("", "invalid CUDA version '': expected MAJOR.MINOR, e.g. 12.6"),
], ids=["no-minor", "not-a-number", "empty"])
def test_parse_cuda_version_rejects(text: str, message: str) -> None:
    assert error_text(ValueError, parse_cuda_version, text) == message
