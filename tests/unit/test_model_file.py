"""``launcher up --model FILE``, pure: the file checked before the engine is touched, where the
container finds it, and the archive a remote engine's volume gets."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from launcher._errors import UsageError
from launcher._model import check_model_file, model_archive

HINT = ("pass a TorchScript (.pt, torch.jit.save) or torch.export (.pt2, torch.export.save) "
        "file: --model PATH")


def _archive(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("model/data.pkl", b"weights")
    return path


def test_a_local_engine_gets_a_read_only_bind(tmp_path: Path) -> None:
    model = check_model_file("wide.pt2", str(_archive(tmp_path / "wide.pt2").parent))
    assert model.path == tmp_path / "wide.pt2"
    assert model.container_path == "/model/wide.pt2"
    assert model.bind == f"{tmp_path}/wide.pt2:/model/wide.pt2:ro"
    assert len(model.digest) == 16


def test_a_remote_engine_gets_a_copy_in_the_models_volume(tmp_path: Path) -> None:
    model = check_model_file(str(_archive(tmp_path / "m.pt")), "/", in_volume=True)
    assert (model.container_path, model.bind) == ("/models/m.pt", None)
    with tarfile.open(fileobj=io.BytesIO(model_archive(model))) as tar:
        [member] = tar.getmembers()
        assert (member.name, member.uid, member.mode) == ("m.pt", 10001, 0o444)
        extracted = tar.extractfile(member)
        assert extracted is not None
        assert extracted.read() == (tmp_path / "m.pt").read_bytes()


def test_the_digest_follows_the_bytes(tmp_path: Path) -> None:
    path = _archive(tmp_path / "m.pt")
    first = check_model_file(str(path), "/").digest
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("model/more.pkl", b"retrained")
    assert check_model_file(str(path), "/").digest != first


BAD = [
    # what is on disk, the error after the flag
    ("missing", "no such file"),
    ("dir", "not a file"),
    ("text", "not a TorchScript or torch.export archive (not a zip file)"),
]


@pytest.mark.parametrize("kind, why", BAD, ids=[k for k, _ in BAD])
def test_a_bad_model_file_is_a_usage_error(tmp_path: Path, kind: str, why: str) -> None:
    path = tmp_path / "model.pt"
    if kind == "dir":
        path.mkdir()
    elif kind == "text":
        path.write_text("not a model\n")
    with pytest.raises(UsageError) as caught:
        check_model_file(str(path), "/")
    assert (caught.value.message, caught.value.hint, caught.value.exit_code) == (
        f'invalid argument "{path}" for "--model" flag: {why}', HINT, 2)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_model_file_is_a_usage_error(tmp_path: Path) -> None:
    path = _archive(tmp_path / "m.pt")
    path.chmod(0)
    with pytest.raises(UsageError) as caught:
        check_model_file(str(path), "/")
    assert caught.value.message == (f'invalid argument "{path}" for "--model" flag: cannot '
                                    "read it (Permission denied)")
