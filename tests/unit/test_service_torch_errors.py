"""Which torch errors mean "the device failed" (service/_torch.py's table), with torch's own types."""

from __future__ import annotations

import pytest
import torch

from service._torch import device_error_reason

ILLEGAL = "CUDA error: an illegal memory access was encountered"


@pytest.mark.parametrize("error, reason", [
    (torch.AcceleratorError(f"{ILLEGAL}\nCUDA kernel errors might be asynchronously reported"),
     ILLEGAL),
    (torch.AcceleratorError("CUDA error: unspecified launch failure"),
     "CUDA error: unspecified launch failure"),
    (RuntimeError("CUDA error: device-side assert triggered"),
     "CUDA error: device-side assert triggered"),
    (RuntimeError("CUDA error: CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasSgemm( ... )`"),
     "CUDA error: CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasSgemm( ... )`"),
    (RuntimeError("CUDA driver error: unknown error"), "CUDA driver error: unknown error"),
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), None),
    (RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x3 and 64x10)"), None),
    (ValueError("CUDA error: not a RuntimeError, not from torch"), None),
    (KeyError("predictions"), None),
], ids=["accelerator-error", "launch-failure", "runtime-error-before-torch-2.8", "cublas",
        "driver", "out-of-memory-is-not", "model-shape-error-is-not", "other-type-is-not",
        "predictor-bug-is-not"])
def test_device_error_reason(error: BaseException, reason: str | None) -> None:
    assert device_error_reason(error) == reason
