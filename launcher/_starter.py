"""``launcher init DIR``'s starter project, pure: the files (a predictor, its requirements, its
launcher.toml, a README) and writing them without ever replacing one that is there.

The predictor follows the contract of :mod:`service._predictor` and runs as generated, so the
first ``launcher up --predictor ... --code DIR`` answers ``/predict``.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from launcher._errors import UsageError

__all__ = ["STARTER_CLASS", "STARTER_EXAMPLE", "starter_files", "up_command", "write_starter"]

STARTER_CLASS = "predict:Predictor"
# A row of the starter's width (3) for the README's curl.
STARTER_EXAMPLE = '{"inputs": [[0.5, 2.0, 1.0]]}'

_PREDICT_PY = '''\
"""A predictor for the gpu-launcher service: `setup` once, `predict` for every batch.

Serve it with `launcher up` in this directory (launcher.toml, README.md). The service
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
        """Load the model, once, before the first request. `device` is this replica's device,
        "cpu" or "cuda:N" (the service resolves the DEVICE setting: auto, cuda, a list).
        Slow work (weights, warm-up) belongs here."""
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

_REQUIREMENTS_TXT = '''\
# Python packages predict.py needs beyond the service image, one per line, pinned:
#   scikit-learn==1.5.2
# They are installed in their own image layer, from the wheelhouse when you build offline
# (--wheelhouse DIR). torch, FastAPI and the rest of the service are in the image already
# (its requirements.lock); a line that would replace the pinned torch is refused.
'''


_LAUNCHER_TOML = f'''\
# `launcher up` in this directory reads this file (`launcher -f FILE up` reads another one).
# Keys are launcher up's flags without the dashes (see `launcher up --help`): a string for a
# flag that takes one value, a list for one you may repeat, true/false for a switch. Paths
# are relative to this file. A flag on the command line wins over its key here.
predictor = "{STARTER_CLASS}"
code = "."
requirements = "requirements.txt"

# name = "my-model"                      # the container (default gpu-launcher)
# gpus = ["all"]                         # no GPU found: CPU, with a warning
# publish = ["127.0.0.1:8080:8000"]
# memory = "8g"
# wheelhouse = "wheels"                  # build offline from this folder's wheels
#
# [env]
# MAX_BATCH_ROWS = "64"
'''


def up_command(code: str) -> str:
    """The command line that serves a starter project in ``code`` (its launcher.toml says
    the predictor, the code and the requirements)."""
    return "launcher up" if code in (".", "./") else f"cd {shlex.quote(code)} && launcher up"


def _readme(name: str) -> str:
    return f'''\
# {name}

A model for the gpu-launcher inference service: `predict.py` is the predictor (`setup` once,
`predict` per batch), `requirements.txt` the packages it needs beyond the service image.

Serve it from this directory (the image is built FROM the service image: your requirements in
one layer, this directory in the next; an unchanged project is not rebuilt):

    {up_command(".")}

`launcher.toml` holds its flags (`launcher up --predictor {STARTER_CLASS} --code .
--requirements requirements.txt`); add yours there (`gpus`, `publish`, `memory`, `env`, ...),
or pass them on the command line, which wins.

Then ask it:

    curl -s http://127.0.0.1:8000/predict -d '{STARTER_EXAMPLE}'

Edit `predict.py` and run the same `launcher up` again: only the code layer is rebuilt.
'''


def starter_files(directory: Path) -> dict[str, str]:
    """The starter's files by name, with their text."""
    return {"predict.py": _PREDICT_PY, "requirements.txt": _REQUIREMENTS_TXT,
            "launcher.toml": _LAUNCHER_TOML,
            "README.md": _readme(directory.resolve().name or "predictor")}


def write_starter(directory: Path) -> list[Path]:
    """Write the starter into ``directory`` (made when missing); a :class:`UsageError` and
    nothing written when any of its files is there already."""
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"launcher init {directory}: not a directory",
                         hint="pass a new or empty directory: launcher init DIR")
    files = starter_files(directory)
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
