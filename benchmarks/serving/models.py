#!/usr/bin/env python3
"""Write benchmark model files (TorchScript, random weights, seed 0):

    models.py wide OUT.pt          64 -> 2048 -> 2048 -> 10 MLP
    models.py transformer OUT.pt   64 values as 16 tokens of 4 -> 4-layer encoder (d=256) -> 10
"""

# No `from __future__ import annotations`: TorchScript reads the class attribute annotation.
import sys
import warnings

import torch
from torch import nn


class Encoder(nn.Module):
    input_width: int

    def __init__(self, tokens: int = 16, dim: int = 256, heads: int = 8, layers: int = 4,
                 classes: int = 10) -> None:
        super().__init__()
        self.input_width = 64
        self.tokens = tokens
        self.embed = nn.Linear(64 // tokens, dim)
        self.pos = nn.Parameter(torch.randn(tokens, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, dim * 4, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x.view(x.size(0), self.tokens, -1)) + self.pos
        return self.head(self.encoder(h).mean(dim=1))


def build(kind: str) -> nn.Module:
    torch.manual_seed(0)
    if kind == "wide":
        return nn.Sequential(nn.Linear(64, 2048), nn.ReLU(), nn.Linear(2048, 2048), nn.ReLU(),
                             nn.Linear(2048, 10)).eval()
    if kind == "transformer":
        return Encoder().eval()
    raise SystemExit(f"unknown model {kind!r}: use wide or transformer")


def save(kind: str, path: str) -> None:
    with warnings.catch_warnings():  # TorchScript is deprecated in torch 2.13, still the format
        warnings.simplefilter("ignore")
        torch.jit.script(build(kind)).save(path)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: models.py wide|transformer OUT.pt")
    save(sys.argv[1], sys.argv[2])
