"""The one module that imports torch: the built-in predictor for TorchScript / torch.export files,
and what the replicas need from torch (CUDA facts, per-thread CPU threads, device errors).

The model maps float32 ``[N, F]`` to ``[N, K]``; predictions are the argmax, scores the softmax.
"""

from __future__ import annotations

import logging
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from service._device import CudaFacts, choose_device
from service._predictor import Batch, OutOfMemory, PredictorError

__all__ = ["DEVICE_ERROR_PREFIXES", "TorchModelPredictor", "TorchRuntime", "device_error_reason",
           "out_of_memory", "pick_device", "torch_version"]

log = logging.getLogger("service")

# How a failed CUDA call reads when it reaches Python: the start of the RuntimeError's text, with
# where torch writes it. Since torch 2.8 C10_CUDA_CHECK raises torch.AcceleratorError (a
# RuntimeError) instead, matched by type; the others still raise plain RuntimeErrors.
DEVICE_ERROR_PREFIXES = (
    # c10/cuda/CUDAException.cpp (C10_CUDA_CHECK: "CUDA error: " + cudaGetErrorString, e.g. "an
    # illegal memory access was encountered", "unspecified launch failure", "device-side assert
    # triggered"); STD_CUDA_CHECK (pytorch/pytorch#169385, same text); cuBLAS / cuSPARSE
    # failures (TORCH_CUDABLAS_CHECK, TORCH_CUDASPARSE_CHECK in aten/src/ATen/cuda/Exceptions.h)
    "CUDA error: ",
    # AT_CUDA_DRIVER_CHECK, aten/src/ATen/cuda/Exceptions.h (driver API calls)
    "CUDA driver error: ",
)
# torch.AcceleratorError: pytorch/pytorch#152023 (torch >= 2.8); older torch has no such type.
_ACCELERATOR_ERROR: tuple[type[BaseException], ...] = tuple(
    t for t in (getattr(torch, "AcceleratorError", None),) if isinstance(t, type))


def device_error_reason(exc: BaseException) -> str | None:
    """The text of a torch error that means the device failed, or None for any other error.

    CUDA out of memory is not one (torch.OutOfMemoryError: the batch was too big, the device is
    fine); neither are the model's own errors (a wrong shape, a bad dtype).
    """
    if isinstance(exc, torch.OutOfMemoryError):
        return None
    text = str(exc).strip()
    if isinstance(exc, _ACCELERATOR_ERROR) or (
            isinstance(exc, RuntimeError) and text.startswith(DEVICE_ERROR_PREFIXES)):
        return text.splitlines()[0] if text else type(exc).__name__
    return None


class TorchRuntime:
    """What the replica pool asks torch (``service._replicas.Runtime``)."""

    def cuda_facts(self) -> CudaFacts:
        available = torch.cuda.is_available()
        return CudaFacts(torch.version.cuda is not None, available,
                         torch.cuda.device_count() if available else 0)

    def use_cpu_threads(self, threads: int) -> None:
        """Intra-op threads for the calling thread (a replica's worker). ``set_num_threads`` sets
        this thread's OpenMP/MKL count and a process-wide default that every thread copies at its
        first parallel op (aten/src/ATen/ParallelOpenMP.cpp, ``lazy_init_num_threads``), which
        would overwrite a count set before it: so make that first copy happen, then set ours."""
        torch.get_num_threads()
        torch.set_num_threads(threads)

    def device_error_reason(self, exc: BaseException) -> str | None:
        return device_error_reason(exc)


def torch_version() -> str:
    return str(torch.__version__)


def out_of_memory(error: BaseException) -> OutOfMemory | None:
    """torch's device out-of-memory error as the service's :class:`OutOfMemory` (after freeing
    the allocator's cached blocks, so a retry in halves can fit); None for any other error."""
    if not isinstance(error, torch.OutOfMemoryError):  # torch.cuda.OutOfMemoryError is this
        return None
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    first = str(error).strip().splitlines()
    return OutOfMemory(f"out of device memory: {first[0] if first else type(error).__name__}")


def pick_device(requested: str) -> str:
    """Resolve auto|cpu|cuda|cuda:N (raises DeviceError); logs the CPU fallback once."""
    choice = choose_device(requested, torch.version.cuda is not None, torch.cuda.is_available(),
                           torch.cuda.device_count() if torch.cuda.is_available() else 0)
    if choice.fallback_reason:
        log.warning("DEVICE=auto: running on the CPU because %s", choice.fallback_reason)
    return choice.device


def _is_export_archive(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith("archive_format") for n in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


class _Head(torch.nn.Module):
    """Model, softmax and argmax in one call: the inference thread takes the GIL back once per
    batch instead of once per op (each wait can last a whole switch interval under load)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, flat: torch.Tensor, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(flat.view(rows, -1))
        if out.dim() != 2 or out.size(0) != rows:
            return out, torch.empty(0, dtype=torch.long)  # a bad shape: reported by the caller
        scores = torch.softmax(out.float(), dim=1)
        return scores, scores.argmax(dim=1)


def _compile_head(model: Any) -> Any:
    """The scripted head for a TorchScript model; the eager head otherwise (torch.export)."""
    head = _Head(model)  # no .eval(): an exported module refuses train(); the model has its mode
    if not isinstance(model, torch.jit.ScriptModule):
        return head
    with warnings.catch_warnings():  # TorchScript is deprecated in torch 2.13, still supported
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(head)


class TorchModelPredictor:
    """Serves a TorchScript file or a ``torch.export`` archive (``.pt2``)."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise PredictorError(f"MODEL_PATH={path}: no such file",
                                 "point MODEL_PATH at a TorchScript (.pt) or torch.export "
                                 "(.pt2) file, or unset it for the built-in digits model")
        self.path = path
        self.input_width: int | None = None
        self.device = "cpu"
        self.info: Mapping[str, str] = {}
        # The Open Inference Protocol's datatypes for the columns predict() returns.
        self.output_datatypes: Mapping[str, str] = {"predictions": "INT64", "scores": "FP32"}
        self._model: Any = None

    def setup(self, device: str) -> None:
        self.device = pick_device(device)  # the service passes a resolved device: cpu, cuda:N
        export = _is_export_archive(self.path)
        kind = "torch.export" if export else "torchscript"
        try:
            if export:
                program = torch.export.load(str(self.path))
                model = program.module().to(self.device)
                self.input_width = _export_width(program)
            else:
                model = torch.jit.load(str(self.path), map_location=self.device)  # type: ignore[no-untyped-call]
                model.eval()
                self.input_width = _script_width(model)
        except Exception as exc:
            if isinstance(exc, torch.OutOfMemoryError) or device_error_reason(exc) is not None:
                raise  # the device failed or is full, not the file
            raise _not_a_model(self.path, "torch.export" if export else "TorchScript",
                               exc) from exc
        self._model = _compile_head(model)
        self.info = {"model": self.path.name, "format": kind, "device": self.device,
                     "torch_version": torch_version()}

    def predict(self, batch: Batch) -> Mapping[str, Sequence[Any]]:
        x = torch.frombuffer(batch.values, dtype=torch.float32)
        if self.device != "cpu":
            x = x.to(self.device)
        with torch.inference_mode():
            scores, predictions = self._model(x, batch.rows)
        if predictions.dim() != 1 or predictions.size(0) != batch.rows:
            raise ValueError(f"model output has shape {list(scores.shape)}, "
                             f"expected [{batch.rows}, K]")
        return {"predictions": predictions.tolist(), "scores": scores.tolist()}


def _not_a_model(path: Path, kind: str, exc: BaseException) -> PredictorError:
    """A file torch cannot load as ``kind``: the setting, the file and torch's first line
    (without the request for a better message that torch's checks append)."""
    text = str(exc).strip()
    why = text.splitlines()[0].partition("(Could this error message")[0].strip() if text else ""
    return PredictorError(f"MODEL_PATH={path}: torch cannot load it as a {kind} model "
                          f"({why or type(exc).__name__})",
                          "point MODEL_PATH (launcher up --model) at a file saved with "
                          "torch.jit.save (.pt) or torch.export.save (.pt2), or unset it for "
                          "the built-in digits model")


def _script_width(model: Any) -> int | None:
    declared = getattr(model, "input_width", None)
    if isinstance(declared, int):
        return declared
    for name, param in model.named_parameters():  # the first layer's weight is [out, in]
        return int(param.shape[1]) if name.endswith("weight") and param.dim() == 2 else None
    return None


def _export_width(program: Any) -> int | None:
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in program.graph_signature.user_inputs:
            shape: tuple[Any, ...] = tuple(getattr(node.meta.get("val"), "shape", ()))
            return int(shape[1]) if len(shape) == 2 and isinstance(shape[1], int) else None
    return None
