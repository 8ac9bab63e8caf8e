"""``launcher init DIR [--kind tensor|object]``'s starter project, pure: the files (a
predictor, its requirements, a README) and writing them without ever replacing one that is there.

The predictor follows the contract of :mod:`service._predictor` (a tensor predictor of float
rows, or an object predictor of any items) and runs as generated, so the first
``launcher up --predictor ... --code DIR`` answers ``/predict``.
"""

from __future__ import annotations

from pathlib import Path

from launcher._errors import UsageError

__all__ = ["KINDS", "OBJECT_EXAMPLE", "STARTER_CLASS", "STARTER_EXAMPLE", "starter_files",
           "up_command", "write_starter"]

STARTER_CLASS = "predict:Predictor"
# A row of the starter's width (3) for the README's curl.
STARTER_EXAMPLE = '{"inputs": [[0.5, 2.0, 1.0]]}'
# The object starter's example request (its `example` attribute too).
OBJECT_EXAMPLE = '{"inputs": ["Is this a question?", "A statement."]}'
KINDS = ("tensor", "object")

_PREDICT_PY = '''\
"""A predictor for the gpu-launcher service: `setup` once, `predict` for every batch.

Serve it with `launcher up --predictor predict:Predictor --code .` (README.md). The service
imports this module, builds `Predictor()` with no arguments, calls `setup(device)` once in its
inference thread, then `predict(batch)` for each batch of rows its dynamic batcher collects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the service image has it; the starter runs without it too
    from service import Batch


class Predictor:
    # Values per row. Known up front here; a model that only knows after loading sets it in
    # setup(). None means: the INPUT_WIDTH setting says it.
    input_width: int | None = 3

    def setup(self, device: str) -> None:
        """Load the model, once, before the first request. `device` is the DEVICE setting:
        "cpu", "cuda", "cuda:N" or "auto". Slow work (weights, warm-up) belongs here."""
        # This starter's "model": one weight row per class; the score of a class is its
        # weights times the row. Replace with yours, e.g. torch.jit.load(...).to(device).
        self.weights = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
        # Optional: labels for the predictor_model_info metric, read after setup().
        self.info = {"model": "starter", "device": device}

    def predict(self, batch: Batch) -> Mapping[str, Sequence[Any]]:
        """A batch of `batch.rows` rows of `batch.width` float32 values -> columns with one item
        per row. Each caller gets its own rows of every column."""
        rows = batch.tolist()  # list of rows; batch.values is the flat float32 array
        scores = [[sum(w * x for w, x in zip(ws, row)) for ws in self.weights] for row in rows]
        return {
            "predictions": [max(range(len(s)), key=s.__getitem__) for s in scores],
            "scores": scores,
        }

    # Optional hooks; uncomment to use them.
    #
    # def decode(self, payload: Any) -> Any:
    #     """The request's JSON -> the list of rows (without this hook: payload["inputs"]).
    #     Raise ValueError for a body that does not fit: the client gets a 422 with its text."""
    #     return [[float(v) for v in row] for row in payload["rows"]]
    #
    # def encode(self, outputs: dict[str, list[Any]]) -> Any:
    #     """One request's columns -> its JSON response (without this hook: the columns)."""
    #     return {"labels": [["a", "b", "c"][p] for p in outputs["predictions"]]}
'''

_OBJECT_PREDICT_PY = '''\
"""An object predictor for the gpu-launcher service: `decode` turns a request into items (any
Python values: texts here; images, records), `predict` answers a batch of them.

Serve it with `launcher up --predictor predict:Predictor --code .` (README.md). The service
imports this module, builds `Predictor()` with no arguments, calls `setup(device)` once in its
inference thread, then `predict(items)` for each batch its dynamic batcher collects from many
requests. Without `input_width` this is an object predictor (docs/own-model.md in gpu-launcher).
"""

from __future__ import annotations

from typing import Any, ClassVar

from service import InputError


class Predictor:
    # A request body: the warm-up, the example in /docs and in `launcher up`'s curl.
    example: ClassVar[dict[str, Any]] = {"inputs": ["Is this a question?", "A statement."]}

    def setup(self, device: str) -> None:
        """Load the model, once, before the first request. `device` is "cpu" or "cuda:N".
        Slow work (weights, a tokenizer) belongs here."""
        self.info = {"model": "starter-objects", "device": device}

    def decode(self, payload: Any) -> list[Any]:
        """One request -> its items. `payload` is the JSON body; for a body whose Content-Type
        is not JSON (image/png, audio/wav, ...) it is the raw bytes. InputError: a 400 with
        its message."""
        texts = payload.get("inputs") if isinstance(payload, dict) else None
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise InputError('send JSON like {"inputs": ["a text", ...]}')
        return texts

    def cost(self, item: str) -> int:
        """What an item weighs in a batch (tokens for text): a batch holds at most
        MAX_BATCH_COST of it, and items of similar cost are batched together."""
        return max(1, len(item.split()))

    def predict(self, items: list[str]) -> list[Any]:
        """Items from many requests -> one output each, in order (JSON values; numpy arrays
        and torch tensors are converted). InputError for one item fails only its request."""
        return [{"question": text.rstrip().endswith("?"), "words": len(text.split())}
                for text in items]

    # Optional; uncomment to use it.
    #
    # def encode(self, outputs: list[Any]) -> Any:
    #     """One request's outputs -> its JSON response (without it: {"outputs": [...]})."""
    #     return {"answers": outputs}
'''

_REQUIREMENTS_TXT = '''\
# Python packages predict.py needs beyond the service image, one per line, pinned:
#   scikit-learn==1.5.2
# They are installed in their own image layer, from the wheelhouse when you build offline
# (--wheelhouse DIR). torch, FastAPI and the rest of the service are in the image already
# (its requirements.lock); a line that would replace the pinned torch is refused.
'''


def up_command(code: str) -> str:
    """The ``launcher up`` line that serves a starter project in ``code``."""
    return (f"launcher up --predictor {STARTER_CLASS} --code {code} "
            f"--requirements {code.rstrip('/')}/requirements.txt")


def _readme(name: str, kind: str) -> str:
    example = OBJECT_EXAMPLE if kind == "object" else STARTER_EXAMPLE
    what = ("an object predictor (`decode` a request into items, `predict` a batch of them)"
            if kind == "object" else "a tensor predictor (float rows of one width)")
    return f'''\
# {name}

A model for the gpu-launcher inference service: `predict.py` is the predictor (`setup` once,
`predict` per batch), {what}; `requirements.txt` the packages it needs beyond the service image.

Serve it from this directory (the image is built FROM the service image: your requirements in
one layer, this directory in the next; an unchanged project is not rebuilt):

    {up_command(".")}

Then ask it:

    curl -s http://127.0.0.1:8000/predict -d '{example}'

Edit `predict.py` and run the same `launcher up` again: only the code layer is rebuilt.
'''


def starter_files(directory: Path, kind: str = "tensor") -> dict[str, str]:
    """The starter's files by name, with their text: a ``tensor`` or an ``object`` predictor."""
    return {"predict.py": _OBJECT_PREDICT_PY if kind == "object" else _PREDICT_PY,
            "requirements.txt": _REQUIREMENTS_TXT,
            "README.md": _readme(directory.resolve().name or "predictor", kind)}


def write_starter(directory: Path, kind: str = "tensor") -> list[Path]:
    """Write the starter into ``directory`` (made when missing); a :class:`UsageError` and
    nothing written when any of its files is there already."""
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"launcher init {directory}: not a directory",
                         hint="pass a new or empty directory: launcher init DIR")
    files = starter_files(directory, kind)
    present = sorted(name for name in files if (directory / name).exists())
    if present:
        raise UsageError(f"launcher init {directory}: {', '.join(present)} already there; "
                         "nothing written",
                         hint="pick a new directory (launcher init DIR), or move those files away")
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        path = directory / name
        with path.open("x") as fh:  # "x": never replace a file that appeared meanwhile
            fh.write(text)
        written.append(path)
    return written
