#!/usr/bin/env python3
"""Write benchmark model files:  models.py wide OUT.pt  (64 -> 2048 -> 2048 -> 10, seed 0)."""

from __future__ import annotations

import sys
import warnings


def wide_mlp(path: str, hidden: int = 2048) -> None:
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                          nn.Linear(hidden, 10)).eval()
    with warnings.catch_warnings():  # TorchScript is deprecated in torch 2.13, still the format
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(model).save(path)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "wide":
        sys.exit("usage: models.py wide OUT.pt")
    wide_mlp(sys.argv[2])
