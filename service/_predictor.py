"""The model contract: ``setup(device)`` once, ``predict(...)`` many times, optional hooks.

Two kinds. A **tensor predictor** (it has ``input_width``) takes float rows of one width::

    input_width: int | None            # known after setup (None: INPUT_WIDTH must be set)
    def setup(self, device: str) -> None
    def predict(self, batch: Batch) -> Mapping[str, Sequence[Any]]   # columns, one item per row
    # optional hooks, each its own Protocol (HasDecode, HasEncode, HasInfo, HasOutputDatatypes)
    def decode(self, payload: Any) -> Any   # request JSON -> the list of rows ('inputs' if absent)
    def encode(self, outputs: dict[str, list[Any]]) -> Any   # one request's columns -> response
    info: Mapping[str, str]             # labels for the model-info metric, read after setup
    output_datatypes: Mapping[str, str] # /v2 datatypes of the columns ("FP32"); default: read
                                        # from the warm-up's values (float FP64, int INT64, ...)

An **object predictor** (no ``input_width``) takes any items: text, images, JSON records::

    def setup(self, device: str) -> None
    def decode(self, payload: Any) -> list       # JSON body (or the raw bytes) -> its items
    def predict(self, items: list) -> Sequence    # one output per item (numpy/torch converted)
    # optional
    def encode(self, outputs: list) -> Any        # one request's outputs -> its response body
    def cost(self, item: Any) -> int              # what the item weighs in a batch (default 1)
    example: Any                                  # a request body: the warm-up, /docs, `up`'s curl
    info: Mapping[str, str]
    def stream(self, item: Any) -> Iterator       # one item -> its chunks, yielded as ready:
                                                  # SSE on /predict, /v1/completions, generate

:class:`InputError` raised in ``decode`` or ``predict`` is the client's mistake (400): in
``predict`` only the bad item's request fails, its batch mates are answered.

``PREDICTOR=package.module:Class`` selects such a class (built with no arguments); otherwise the
built-in :class:`service._torch.TorchModelPredictor` serves ``MODEL_PATH``.
"""

from __future__ import annotations

import importlib
from array import array
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from service._errors import MessageError, ServiceError

__all__ = ["AnyPredictor", "Batch", "HasCost", "HasDecode", "HasEncode", "HasExample", "HasInfo",
           "HasOutputDatatypes", "HasStream", "InputError", "ObjectPredictor", "OutOfMemory",
           "Predictor", "PredictorError", "check_predictor", "is_object_predictor",
           "load_predictor_class",
           "predictor_info"]


@dataclass(frozen=True)
class Batch:
    """``rows`` rows of ``width`` float32 values, row-major in one buffer."""

    values: array[float]
    rows: int
    width: int

    def tolist(self) -> list[list[float]]:
        w = self.width
        return [self.values[i * w:(i + 1) * w].tolist() for i in range(self.rows)]


@runtime_checkable
class Predictor(Protocol):
    input_width: int | None

    def setup(self, device: str) -> None: ...

    def predict(self, batch: Batch) -> Mapping[str, Sequence[Any]]: ...


@runtime_checkable
class ObjectPredictor(Protocol):
    """A predictor of items (no ``input_width``): ``decode`` turns a request into items."""

    def setup(self, device: str) -> None: ...

    def decode(self, payload: Any) -> list[Any]: ...

    def predict(self, items: list[Any]) -> Sequence[Any]: ...


# Either kind; which one is :func:`is_object_predictor`'s answer.
AnyPredictor = Predictor | ObjectPredictor


def is_object_predictor(predictor: object) -> bool:
    """An object predictor is one without ``input_width`` (the attribute, even None, makes a
    tensor predictor)."""
    return not hasattr(predictor, "input_width")


class InputError(MessageError):
    """Raised by a predictor's ``decode`` or ``predict``: this input is the client's mistake
    (HTTP 400 with ``message``). In ``predict`` it fails only the request of the bad item."""

    status = 400


@runtime_checkable
class HasCost(Protocol):
    def cost(self, item: Any) -> int: ...


@runtime_checkable
class HasExample(Protocol):
    @property
    def example(self) -> Any: ...  # a request body


# The optional hooks: ``isinstance(predictor, HasDecode)`` tells whether it has one, and gives the
# type checker its signature. The payload and the response are JSON values, hence ``Any``.
@runtime_checkable
class HasDecode(Protocol):
    def decode(self, payload: Any) -> Any: ...


@runtime_checkable
class HasEncode(Protocol):
    def encode(self, outputs: dict[str, list[Any]]) -> Any: ...


@runtime_checkable
class HasStream(Protocol):
    """Optional: one item -> its output in chunks, yielded as they are ready (SSE)."""

    def stream(self, item: Any) -> Iterator[Any]: ...


@runtime_checkable
class HasInfo(Protocol):
    @property
    def info(self) -> Mapping[str, str]: ...  # read-only here, so a plain attribute fits


def predictor_info(predictor: object) -> dict[str, str]:
    """Its ``info`` as strings (for the metrics' labels and the /v2 metadata); none: {}."""
    return ({str(k): str(v) for k, v in predictor.info.items()}
            if isinstance(predictor, HasInfo) else {})


@runtime_checkable
class HasOutputDatatypes(Protocol):
    @property
    def output_datatypes(self) -> Mapping[str, str]: ...  # column -> /v2 datatype ("FP32")


class PredictorError(ServiceError):
    """A predictor that cannot be used; the message says which and how to fix it."""


class OutOfMemory(ServiceError):
    """A forward pass ran out of device memory (``service._torch`` maps torch's error to it);
    the batcher retries the batch in halves once, then answers 503."""

    status = 503
    reason = "out_of_memory"  # predictor_rejected_requests_total{reason}

    def __init__(self, message: str,
                 hint: str = "send fewer rows per request or lower MAX_BATCH_ROWS") -> None:
        super().__init__(message, hint)


def check_predictor(predictor: object, name: str) -> AnyPredictor:
    for method in ("setup", "predict"):
        if not callable(getattr(predictor, method, None)):
            raise PredictorError(f"predictor {name} has no {method}() method",
                                 "define setup(self, device) and predict(self, batch)")
    for hook in ("decode", "encode", "cost", "stream"):
        if hasattr(predictor, hook) and not callable(getattr(predictor, hook)):
            raise PredictorError(f"predictor {name}: {hook} is not callable",
                                 f"make {hook} a method or remove it")
    if is_object_predictor(predictor) and not callable(getattr(predictor, "decode", None)):
        raise PredictorError(f"predictor {name} has no input_width and no decode() method",
                             "an object predictor defines decode(self, payload) -> list of "
                             "items; a tensor predictor sets self.input_width")
    return predictor  # type: ignore[return-value]


def load_predictor_class(spec: str) -> AnyPredictor:
    """Import ``module:Class`` and build it with no arguments."""
    module_name, _, class_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PredictorError(f"PREDICTOR={spec}: cannot import {module_name!r} ({exc})",
                             "check the module is on PYTHONPATH (the working directory is)")
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise PredictorError(f"PREDICTOR={spec}: {module_name} has no class {class_name!r}",
                             "name a class defined in that module")
    try:
        instance = cls()
    except Exception as exc:
        raise PredictorError(f"PREDICTOR={spec}: {class_name}() failed: {exc}",
                             "the class must be constructible with no arguments") from exc
    return check_predictor(instance, spec)
