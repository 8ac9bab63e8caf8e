"""Model files for tests and benchmarks (torch is imported here only to *write* files)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any


def _script_save(model: Any, path: Path) -> None:
    import torch

    with warnings.catch_warnings():  # TorchScript is deprecated in torch 2.13, still the format
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(model).save(str(path))


def picker_torchscript(path: Path) -> Path:
    """TorchScript [N, 3] -> [N, 2] whose prediction is 0 if x0 > x1 else 1; width from weights."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
        model.bias.zero_()
    _script_save(model, path)
    return path


def picker_export(path: Path) -> Path:
    """The same model as a torch.export archive (.pt2)."""
    import torch

    model = torch.nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
        model.bias.zero_()
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(model, (torch.zeros(2, 3),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))
    return path

