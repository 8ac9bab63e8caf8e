from __future__ import annotations

import pytest

from service._device import DeviceChoice, DeviceError, choose_device

NO_CUDA_BUILD = "this torch build has no CUDA support (a CPU wheel)"
NO_DEVICE = "no CUDA device is visible (no GPU, no driver, or the container got no --gpus)"


@pytest.mark.parametrize("requested, built, available, count, expected", [
    ("cpu", True, True, 2, DeviceChoice("cpu")),
    ("auto", True, True, 2, DeviceChoice("cuda:0")),
    ("auto", False, False, 0, DeviceChoice("cpu", NO_CUDA_BUILD)),
    ("auto", True, False, 0, DeviceChoice("cpu", NO_DEVICE)),
    ("cuda", True, True, 1, DeviceChoice("cuda:0")),
    ("cuda:1", True, True, 2, DeviceChoice("cuda:1")),
], ids=["cpu", "auto-gpu", "auto-cpu-wheel", "auto-no-device", "cuda", "cuda-index"])
def test_choose_device(requested: str, built: bool, available: bool, count: int,
                       expected: DeviceChoice) -> None:
    assert choose_device(requested, built, available, count) == expected


@pytest.mark.parametrize("requested, built, available, count, message", [
    ("cuda", False, False, 0, f"DEVICE=cuda but CUDA cannot be used: {NO_CUDA_BUILD}"),
    ("cuda:0", True, False, 0, f"DEVICE=cuda:0 but CUDA cannot be used: {NO_DEVICE}"),
    ("cuda:2", True, True, 2,
     "DEVICE=cuda:2 but only 2 CUDA device(s) are visible (cuda:0..cuda:1)"),
], ids=["cpu-wheel", "no-device", "index-too-high"])
def test_choose_device_refuses(requested: str, built: bool, available: bool, count: int,
                               message: str) -> None:
    with pytest.raises(DeviceError) as info:
        choose_device(requested, built, available, count)
    assert info.value.message == message
    assert info.value.hint
