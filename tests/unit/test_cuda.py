"""The CUDA table and the choice: newest torch variant the driver runs and every GPU supports."""

from __future__ import annotations

import pytest

from launcher._cuda import (
    CudaChoice,
    GpuNeed,
    NoCudaFits,
    choose_cuda,
    cuda_table,
    parse_cuda_version,
)

H100 = GpuNeed("NVIDIA H100 80GB HBM3", (9, 0))
B200 = GpuNeed("NVIDIA B200", (10, 0))
RTX5090 = GpuNeed("NVIDIA GeForce RTX 5090", (12, 0))
V100 = GpuNeed("Tesla V100-SXM2-16GB", (7, 0))
A100 = GpuNeed("NVIDIA A100-SXM4-40GB", (8, 0))
K80 = GpuNeed("Tesla K80", (3, 7))
FUTURE = GpuNeed("NVIDIA Future", (15, 0))


def test_table_is_consistent() -> None:
    table = cuda_table()
    assert [r.cuda for r in table.releases] == sorted(r.cuda for r in table.releases)
    for variant in table.torch_variants:  # every torch variant has an image to run it
        assert table.release(variant.cuda) is not None, variant
        assert variant.index_url == f"https://download.pytorch.org/whl/{variant.wheel}"
    assert [v.wheel for v in table.torch_variants] == ["cu126", "cu128", "cu130"]
    caps = [c for a in table.archs for c in a.compute_capabilities]
    assert len(caps) == len(set(caps))


CHOICES = [
    ("hopper-580", "580.65.06", (13, 0), [H100], None, "nvidia/cuda:13.0.2-runtime-ubuntu24.04",
     "cu130",
     ("driver 580.65.06 runs CUDA ≤ 13.0; NVIDIA H100 80GB HBM3 (sm_90) needs ≥ 11.8; "
     "torch 2.13.0 wheels: cu126, cu128, cu130 → nvidia/cuda:13.0.2-runtime-ubuntu24.04 with cu130")),
    ("hopper-570", "570.124.06", (12, 8), [H100], None, "nvidia/cuda:12.8.1-runtime-ubuntu24.04",
     "cu128", None),
    ("hopper-560", "560.35.05", (12, 6), [H100], None, "nvidia/cuda:12.6.3-runtime-ubuntu24.04",
     "cu126", None),
    ("blackwell-570", "570.124.06", (12, 8), [B200], None,
     "nvidia/cuda:12.8.1-runtime-ubuntu24.04", "cu128", None),
    ("volta-580-no-cuda13", "580.65.06", (13, 0), [V100], None,
     "nvidia/cuda:12.8.1-runtime-ubuntu24.04", "cu128",
     ("driver 580.65.06 runs CUDA ≤ 13.0; Tesla V100-SXM2-16GB (sm_70) needs ≥ 9.0 and < 13.0; "
     "torch 2.13.0 wheels: cu126, cu128, cu130 → nvidia/cuda:12.8.1-runtime-ubuntu24.04 with cu128")),
    ("two-gpus-common-newest", "580.65.06", (13, 0), [H100, V100], None,
     "nvidia/cuda:12.8.1-runtime-ubuntu24.04", "cu128", None),
    ("pinned", "580.65.06", (13, 0), [H100], (12, 6), "nvidia/cuda:12.6.3-runtime-ubuntu24.04",
     "cu126", None),
    ("no-probe", None, None, [], None, "nvidia/cuda:12.8.1-runtime-ubuntu24.04", "cu128",
     ("driver unknown: CUDA 12.8 by default (drivers ≥ 570; pin another with --cuda); torch "
      "2.13.0 wheels: cu126, cu128, cu130 → nvidia/cuda:12.8.1-runtime-ubuntu24.04 with cu128")),
    ("no-probe-pinned", None, None, [], (12, 8), "nvidia/cuda:12.8.1-runtime-ubuntu24.04",
     "cu128", None),
    ("driver-cuda-from-table", "575.57.08", None, [A100], None,
     "nvidia/cuda:12.8.1-runtime-ubuntu24.04", "cu128", None),
    ("unknown-arch-needs-newest", "580.65.06", (13, 0), [FUTURE], None,
     "nvidia/cuda:13.0.2-runtime-ubuntu24.04", "cu130", None),
]


@pytest.mark.parametrize("driver, driver_cuda, gpus, pinned, image, wheel, explanation",
                         [c[1:] for c in CHOICES], ids=[c[0] for c in CHOICES])
def test_choose_cuda(driver: str | None, driver_cuda: tuple[int, int] | None,
                     gpus: list[GpuNeed], pinned: tuple[int, int] | None, image: str, wheel: str,
                     explanation: str | None) -> None:
    choice = choose_cuda(cuda_table(), driver, driver_cuda, gpus, pinned)
    assert isinstance(choice, CudaChoice)
    assert (choice.image, choice.wheel) == (image, wheel)
    assert choice.index_url == f"https://download.pytorch.org/whl/{wheel}"
    if explanation is not None:
        assert choice.explanation == explanation


REFUSALS = [
    ("hopper-550", "550.54.15", (12, 4), [H100], None,
     ("driver 550.54.15 runs CUDA ≤ 12.4; NVIDIA H100 80GB HBM3 (sm_90) needs ≥ 11.8; torch 2.13.0 "
     "wheels: cu126, cu128, cu130 → none fits: upgrade the driver to ≥ 560.28.03"),
     "upgrade the NVIDIA driver to ≥ 560.28.03 (CUDA 12.6), or run on CPU without --gpus"),
    ("hopper-535", "535.104.05", (12, 2), [H100], None, None,
     "upgrade the NVIDIA driver to ≥ 560.28.03 (CUDA 12.6), or run on CPU without --gpus"),
    ("blackwell-550", "550.54.15", (12, 4), [B200], None,
     ("driver 550.54.15 runs CUDA ≤ 12.4; NVIDIA B200 (sm_100) needs ≥ 12.8; torch 2.13.0 "
     "wheels: cu126, cu128, cu130 → none fits: upgrade the driver to ≥ 570.26"),
     "upgrade the NVIDIA driver to ≥ 570.26 (CUDA 12.8), or run on CPU without --gpus"),
    ("rtx5090-560", "560.35.05", (12, 6), [RTX5090], None, None,
     "upgrade the NVIDIA driver to ≥ 570.26 (CUDA 12.8), or run on CPU without --gpus"),
    ("kepler", "580.65.06", (13, 0), [K80], None, None,
     ("no torch CUDA build supports the selected GPUs together; select GPUs of one generation "
     "with --gpus '\"device=...\"', or run on CPU without --gpus")),
    ("pinned-13-on-volta", "580.65.06", (13, 0), [V100], (13, 0), None,
     "drop --cuda to let the launcher choose, or pick a CUDA the GPUs support"),
    ("pinned-13-on-570", "570.124.06", (12, 8), [H100], (13, 0), None,
     "upgrade the NVIDIA driver to ≥ 580.65.06 (CUDA 13.0), or run on CPU without --gpus"),
    ("pinned-no-wheel", None, None, [], (12, 4), "torch 2.13.0 has no wheels for CUDA 12.4",
     "pick one of --cuda 12.6, 12.8, 13.0"),
]


@pytest.mark.parametrize("driver, driver_cuda, gpus, pinned, explanation, hint",
                         [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_choose_cuda_refuses_with_a_hint(driver: str | None, driver_cuda: tuple[int, int] | None,
                                         gpus: list[GpuNeed], pinned: tuple[int, int] | None,
                                         explanation: str | None, hint: str) -> None:
    with pytest.raises(NoCudaFits) as info:
        choose_cuda(cuda_table(), driver, driver_cuda, gpus, pinned)
    assert info.value.hint == hint
    if explanation is not None:
        assert info.value.explanation == explanation


@pytest.mark.parametrize("text, message", [
    ("12", "invalid CUDA version '12': expected MAJOR.MINOR, e.g. 12.8"),
    ("12.x", "invalid CUDA version '12.x': expected MAJOR.MINOR, e.g. 12.8"),
    ("", "invalid CUDA version '': expected MAJOR.MINOR, e.g. 12.8"),
], ids=["no-minor", "not-a-number", "empty"])
def test_parse_cuda_version_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_cuda_version(text)
    assert str(info.value) == message
