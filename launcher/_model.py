"""``launcher up --model FILE``, pure: the model file checked before the engine is touched, and
where the container finds it.

The stock image serves it, no rebuild: on a local engine the file is bind-mounted read-only at
``/model/NAME``; on a remote engine, where a host path means nothing, it is copied into the
models volume (``/models/NAME``) first. Either way ``MODEL_PATH`` points at it and the plan
carries the file's digest, so a new model at the same path replaces the container.
"""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from launcher._build import sha256_file
from launcher._errors import UsageError

__all__ = ["BIND_DIR", "LABEL_MODEL", "VOLUME_DIR", "ModelFile", "check_model_file",
           "model_archive"]

BIND_DIR = "/model"  # a local engine: the host file bind-mounted read-only here
VOLUME_DIR = "/models"  # a remote engine: copied into the models volume, mounted here
LABEL_MODEL = "org.gpu-launcher.model"  # the file's digest: a new model replaces the container
APP_UID = 10001  # the images' service user owns the copy
_HINT = ("pass a TorchScript (.pt, torch.jit.save) or torch.export (.pt2, torch.export.save) "
         "file: --model PATH")


@dataclass(frozen=True)
class ModelFile:
    """A checked model file on this host, and how the container gets it."""

    path: Path  # absolute
    digest: str  # sha256 of the bytes, 16 hex
    in_volume: bool = False  # remote engine: copied into the models volume

    @property
    def container_path(self) -> str:
        return f"{VOLUME_DIR if self.in_volume else BIND_DIR}/{self.path.name}"

    @property
    def bind(self) -> str | None:
        """The ``HostConfig.Binds`` entry (None when the file is copied instead)."""
        return None if self.in_volume else f"{self.path}:{self.container_path}:ro"


def check_model_file(value: str, cwd: str, in_volume: bool = False) -> ModelFile:
    """``--model``'s value as a :class:`ModelFile`; missing, unreadable or not a model archive
    (both formats are zip archives) → :class:`UsageError` echoing it."""
    path = Path(cwd, os.path.expanduser(value)).resolve()

    def bad(why: str) -> UsageError:
        return UsageError(f'invalid argument "{value}" for "--model" flag: {why}', hint=_HINT)

    if not path.exists():
        raise bad("no such file")
    if not path.is_file():
        raise bad("not a file")
    try:
        digest = sha256_file(path)
    except OSError as exc:
        raise bad(f"cannot read it ({exc.strerror})") from None
    if not zipfile.is_zipfile(path):
        raise bad("not a TorchScript or torch.export archive (not a zip file)")
    return ModelFile(path, digest[:16], in_volume)


def model_archive(model: ModelFile) -> bytes:
    """A tar holding the model file alone, owned by the service user and read-only, for
    ``put_archive`` into ``VOLUME_DIR``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tar.gettarinfo(str(model.path), arcname=model.path.name)
        info.uid = info.gid = APP_UID
        info.uname = info.gname = ""
        info.mode = 0o444
        with model.path.open("rb") as fh:
            tar.addfile(info, fh)
    return buf.getvalue()
