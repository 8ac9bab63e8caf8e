"""The predictor contract: what check_predictor accepts, its optional hooks, and the one error
base the service's errors share (message + hint, printed as error:/hint: with exit 2)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from service._device import DeviceError, choose_device
from service._errors import ServiceError
from service._predictor import (
    Batch,
    HasDecode,
    HasEncode,
    HasInfo,
    PredictorError,
    check_predictor,
    load_predictor_class,
)
from service._settings import Settings, SettingsError


class Plain:
    input_width: int | None = 2

    def setup(self, device: str) -> None:
        pass

    def predict(self, batch: Batch) -> Mapping[str, Sequence[Any]]:
        return {"predictions": [0] * batch.rows}


class WithHooks(Plain):
    def __init__(self) -> None:
        self.info = {"model": "hooks"}

    def decode(self, payload: Any) -> Any:
        return payload["rows"]

    def encode(self, outputs: dict[str, list[Any]]) -> Any:
        return outputs


class NoPredict:
    input_width = 2

    def setup(self, device: str) -> None:
        pass


class NoWidth:
    def setup(self, device: str) -> None:
        pass

    def predict(self, batch: Batch) -> Mapping[str, Sequence[Any]]:
        return {}


class DecodeNotCallable(Plain):
    decode = "rows"


@pytest.mark.parametrize("predictor, message, hint", [
    (NoPredict(), "predictor p has no predict() method",
     "define setup(self, device) and predict(self, batch)"),
    (NoWidth(), "predictor p has no input_width and no decode() method",
     ("an object predictor defines decode(self, payload) -> list of items; a tensor predictor "
     "sets self.input_width")),
    (DecodeNotCallable(), "predictor p: decode is not callable",
     "make decode a method or remove it"),
], ids=["no-predict", "no-input-width", "decode-not-callable"])
def test_check_predictor_refuses_with_the_fix(predictor: object, message: str, hint: str) -> None:
    with pytest.raises(PredictorError) as info:
        check_predictor(predictor, "p")
    assert (info.value.message, info.value.hint) == (message, hint)


@pytest.mark.parametrize("predictor, hooks", [
    (Plain(), (False, False, False)),
    (WithHooks(), (True, True, True)),
], ids=["no-hooks", "all-hooks"])
def test_optional_hooks_are_told_by_their_protocols(predictor: object,
                                                    hooks: tuple[bool, bool, bool]) -> None:
    checked = check_predictor(predictor, "p")
    assert checked is predictor
    assert tuple(isinstance(checked, h) for h in (HasDecode, HasEncode, HasInfo)) == hooks


def _settings() -> None:
    Settings.from_env({"PORT": "http"})


def _device() -> None:
    choose_device("cuda", False, False, 0)


def _predictor() -> None:
    load_predictor_class(f"{__name__}:Nope")


@pytest.mark.parametrize("raise_it, cls, message, hint", [
    (_settings, SettingsError, "Setting 'PORT' has value 'http'. Not a valid integer.",
     "set PORT to a whole number between 0 and 65535"),
    (_device, DeviceError,
     "DEVICE=cuda but CUDA cannot be used: this torch build has no CUDA support (a CPU wheel)",
     "set DEVICE=auto to fall back to the CPU, or give the container a GPU"),
    (_predictor, PredictorError, f"PREDICTOR={__name__}:Nope: {__name__} has no class 'Nope'",
     "name a class defined in that module"),
], ids=["settings", "device", "predictor"])
def test_service_errors_share_one_base_with_message_and_hint(
        raise_it: Callable[[], None], cls: type[ServiceError], message: str, hint: str) -> None:
    with pytest.raises(ServiceError) as info:
        raise_it()
    assert type(info.value) is cls
    assert (str(info.value), info.value.message, info.value.hint) == (message, message, hint)
