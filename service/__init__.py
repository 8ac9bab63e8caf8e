"""The inference service: FastAPI + PyTorch predictor with dynamic batching.

Import-light on purpose: the launcher imports :mod:`service.nvml` on hosts without torch or
FastAPI, so the public names below load their modules on first use (PEP 562).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["Batch", "DeviceFailure", "InputError", "ObjectPredictor", "Predictor",
           "PredictorError", "Prompt", "ServiceError", "Settings", "SettingsError", "create_app"]

_HOMES = {"Batch": "service._predictor", "DeviceFailure": "service._device",
          "InputError": "service._predictor", "ObjectPredictor": "service._predictor",
          "Predictor": "service._predictor", "PredictorError": "service._predictor",
          "Prompt": "service._prompt",
          "ServiceError": "service._errors", "Settings": "service._settings",
          "SettingsError": "service._settings", "create_app": "service._app"}

if TYPE_CHECKING:
    from service._app import create_app
    from service._device import DeviceFailure
    from service._errors import ServiceError
    from service._predictor import Batch, InputError, ObjectPredictor, Predictor, PredictorError
    from service._prompt import Prompt
    from service._settings import Settings, SettingsError


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'service' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
