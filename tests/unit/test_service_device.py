from __future__ import annotations

import pytest

from service._device import (
    NO_CUDA,
    CudaFacts,
    DeviceChoice,
    DeviceError,
    choose_device,
    plan_replicas,
)

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


GPUS_2 = CudaFacts(True, True, 2)
NO_GPU = CudaFacts(True, False, 0)
CUDA_NO_DEVICE = DeviceError(f"DEVICE=cuda but CUDA cannot be used: {NO_DEVICE}", "")
CUDA0_NO_BUILD = DeviceError(f"DEVICE=cuda:0 but CUDA cannot be used: {NO_CUDA_BUILD}", "")
CUDA3_TOO_HIGH = DeviceError("DEVICE=cuda:3 but only 2 CUDA device(s) are visible "
                             "(cuda:0..cuda:1)", "")


@pytest.mark.parametrize("entries, per_device, cpus, facts, devices, failed, fallbacks", [
    (["auto"], 1, 2, GPUS_2, ["cuda:0", "cuda:1"], {}, []),
    (["auto"], 1, 2, NO_CUDA, ["cpu"], {}, [NO_CUDA_BUILD]),
    (["auto"], 2, 2, NO_GPU, ["cpu", "cpu"], {}, [NO_DEVICE]),
    (["cuda"], 2, 2, GPUS_2, ["cuda:0", "cuda:1", "cuda:0", "cuda:1"], {}, []),
    (["cuda"], 1, 2, NO_GPU, ["cuda"], {0: CUDA_NO_DEVICE}, []),
    (["cuda:1"], 1, 2, GPUS_2, ["cuda:1"], {}, []),
    (["cuda:0", "cuda:3"], 1, 2, GPUS_2, ["cuda:0", "cuda:3"], {1: CUDA3_TOO_HIGH}, []),
    (["cpu", "cpu"], 1, 2, NO_CUDA, ["cpu", "cpu"], {}, []),
    (["cpu", "cuda:0"], 1, 2, GPUS_2, ["cpu", "cuda:0"], {}, []),
    (["cuda", "cpu"], 1, 2, GPUS_2, ["cuda:0", "cuda:1", "cpu"], {}, []),
    (["cuda:0", "cuda:0"], 2, 2, GPUS_2, ["cuda:0"] * 4, {}, []),
    (["auto"], None, 8, GPUS_2, ["cuda:0", "cuda:1"], {}, []),
    (["auto"], None, 2, NO_CUDA, ["cpu", "cpu"], {}, [NO_CUDA_BUILD]),
    (["cpu"], None, 1, NO_CUDA, ["cpu"], {}, []),
    (["cpu"], None, 64, NO_CUDA, ["cpu"] * 8, {}, []),
    (["cpu", "cpu"], None, 4, NO_CUDA, ["cpu"] * 4, {}, []),
    (["cpu", "cpu", "cpu"], None, 2, NO_CUDA, ["cpu"] * 3, {}, []),
    (["cpu", "cuda:0"], None, 3, GPUS_2, ["cpu", "cuda:0", "cpu", "cpu"], {}, []),
    (["cpu", "cuda:0"], None, 2, NO_CUDA, ["cpu", "cuda:0", "cpu"], {1: CUDA0_NO_BUILD}, []),
], ids=["auto-every-gpu", "auto-cpu-wheel", "auto-no-gpu-two-each", "cuda-two-each-interleaved",
        "cuda-without-gpu-fails", "one-gpu", "index-too-high-fails-alone", "cpu-twice",
        "cpu-and-gpu", "every-gpu-and-cpu", "same-gpu-listed-twice", "auto-count-one-per-gpu",
        "auto-count-cpu-one-per-thread", "auto-count-one-cpu", "auto-count-cpu-at-most-8",
        "auto-count-shared-by-cpu-entries", "auto-count-at-least-one-per-entry",
        "auto-count-cpu-and-gpu", "auto-count-failed-gpu-once"])
def test_plan_replicas(entries: list[str], per_device: int | None, cpus: int, facts: CudaFacts,
                       devices: list[str], failed: dict[int, DeviceError],
                       fallbacks: list[str]) -> None:
    slots, reasons = plan_replicas(entries, per_device, facts, cpus)
    assert [s.device for s in slots] == devices
    assert {i: s.error.message for i, s in enumerate(slots) if s.error} == {
        i: e.message for i, e in failed.items()}
    assert reasons == fallbacks
