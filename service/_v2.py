"""Open Inference Protocol (KServe v2 / Triton HTTP) REST: routes, request and response JSON.

Per kserve/open-inference-protocol ``specification/protocol/inference_rest.md`` with Triton's
binary tensor extension (``Inference-Header-Content-Length``, ``binary_data_size``,
``binary_data``, ``binary_data_output``). The model has one input, ``input`` (FP32 ``[-1, W]``;
any numeric datatype is taken and converted), and its outputs are the predictor's columns.
Errors are ``{"error": "..."}``: 400 for the client's mistake, 404 for an unknown model, version
or route, 503 (with ``Retry-After``) until the model is ready. These are the pure parts (routes,
the model's metadata, request parsing, response building: orjson and struct, no pydantic);
:mod:`service._v2_server` serves them, into the same batcher as ``POST /predict``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import chain
from pathlib import Path
from typing import Any

import orjson

from service._inputs import BadRequest, json_kind
from service._tensors import (
    DATATYPES,
    Datatype,
    TensorError,
    decode_binary,
    decode_json,
    element_count,
    encode_binary,
    encode_json,
    infer_datatype,
    parse_datatype,
    to_float32,
)
from service._v2_objects import bytes_items

__all__ = [
    "EXTENSIONS",
    "INPUT_NAME",
    "MODEL_VERSION",
    "RETRY_AFTER_S",
    "ROUTES",
    "SERVER_NAME",
    "InferRequest",
    "ModelSpec",
    "TensorSpec",
    "V2Error",
    "binary_size",
    "default_model_name",
    "describe_model",
    "encode_response",
    "match_route",
    "parse_infer",
]

INPUT_NAME = "input"
MODEL_VERSION = "1"
SERVER_NAME = "gpu-launcher"
EXTENSIONS = ("binary_tensor_data", "generate")
# How long a client should wait while the model loads (it takes seconds, not minutes).
RETRY_AFTER_S = 1
_PLATFORMS = {"torchscript": "pytorch_torchscript", "torch.export": "pytorch_torch_export"}

# The template labels the metrics (bounded label values).
ROUTES = {  # action: route template
    "server_metadata": "/v2",
    "live": "/v2/health/live",
    "ready": "/v2/health/ready",
    "model_metadata": "/v2/models/{model_name}",
    "model_version_metadata": "/v2/models/{model_name}/versions/{model_version}",
    "model_ready": "/v2/models/{model_name}/ready",
    "model_version_ready": "/v2/models/{model_name}/versions/{model_version}/ready",
    "infer": "/v2/models/{model_name}/infer",
    "version_infer": "/v2/models/{model_name}/versions/{model_version}/infer",
    "generate": "/v2/models/{model_name}/generate",
    "generate_stream": "/v2/models/{model_name}/generate_stream",
    "version_generate": "/v2/models/{model_name}/versions/{model_version}/generate",
    "version_generate_stream": "/v2/models/{model_name}/versions/{model_version}/"
                               "generate_stream",
}


class V2Error(BadRequest):
    """A /v2 answer other than 200: the status (a 5xx too: not ready, a failed inference), the
    ``error`` text and any extra headers."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]  # -1: the batch dimension

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    @cached_property
    def dt(self) -> Datatype:
        return DATATYPES[self.datatype]


@dataclass(frozen=True)
class _Parsed:
    """A binary request's JSON header, parsed and checked against ``binary_size`` bytes of
    tensor data and ``max_rows``: all of the request but the tensor's values."""

    binary_size: int
    max_rows: int
    rows: int
    datatype: Datatype
    outputs: tuple[tuple[TensorSpec, bool], ...]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    platform: str
    input: TensorSpec
    outputs: tuple[TensorSpec, ...]
    version: str = MODEL_VERSION
    items: bool = False  # an object predictor's (service._v2_objects): BYTES in, one output
    # JSON headers of all-binary responses by row count (see encode_response)
    binary_headers: dict[int, bytes] = field(default_factory=dict, compare=False, repr=False)
    # What a binary request's JSON header said, by the header's bytes (see parse_infer)
    binary_requests: dict[bytes, _Parsed] = field(default_factory=dict, compare=False,
                                                  repr=False)

    @property
    def width(self) -> int:
        return self.input.shape[1]

    @cached_property
    def json_outputs(self) -> tuple[tuple[TensorSpec, bool], ...]:
        return tuple((o, False) for o in self.outputs)

    @cached_property
    def binary_outputs(self) -> tuple[tuple[TensorSpec, bool], ...]:
        return tuple((o, True) for o in self.outputs)

    @cached_property
    def fixed_size(self) -> bool:
        """Every output's binary size follows from its shape (no BYTES, no BF16)."""
        return all(o.dt.fixed for o in self.outputs)

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "versions": [self.version], "platform": self.platform,
                "inputs": [self.input.as_json()],
                "outputs": [o.as_json() for o in self.outputs]}


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    rows: int
    values: Any  # array[float]: rows * width float32 values, row-major; or the items (str)
    outputs: tuple[tuple[TensorSpec, bool], ...]  # (output, as binary)


def default_model_name(model_name: str, predictor: str, model_path: Path) -> str:
    """``MODEL_NAME``, else the Python predictor's class, else the model file's stem."""
    if model_name:
        return model_name
    return predictor.rpartition(":")[2] if predictor else model_path.stem


def describe_model(name: str, info: Mapping[str, str], width: int,
                   sample: Mapping[str, Sequence[Any]],
                   declared: Mapping[str, str] | None = None) -> ModelSpec:
    """The model's metadata, from a warm-up batch's columns; datatypes as the predictor declares
    them (``output_datatypes``), else read from the values."""
    outputs = []
    for column, values in sample.items():
        shape, leaf = [-1], values[0] if len(values) else 0.0
        while isinstance(leaf, (list, tuple)):
            shape.append(len(leaf))
            leaf = leaf[0] if leaf else 0.0
        kind = (declared or {}).get(column) or infer_datatype(leaf)
        outputs.append(TensorSpec(str(column), parse_datatype(kind).name, tuple(shape)))
    platform = _PLATFORMS.get(info.get("format", ""), "python")
    return ModelSpec(name, platform, TensorSpec(INPUT_NAME, "FP32", (-1, width)), tuple(outputs))


def match_route(path: str) -> tuple[str, str | None, str | None] | None:
    """``(action, model name, version)`` of a ``/v2`` path, or None."""
    parts = path.split("/")[2:]  # "", "v2", ...
    n = len(parts)
    if n == 0:
        return "server_metadata", None, None
    if parts[0] == "health" and n == 2 and parts[1] in ("live", "ready"):
        return parts[1], None, None
    if parts[0] != "models" or n < 2 or not parts[1]:
        return None
    name, rest = parts[1], parts[2:]
    version = None
    if len(rest) >= 2 and rest[0] == "versions" and rest[1]:
        version, rest = rest[1], rest[2:]
    prefix = "model_version_" if version is not None else "model_"
    if not rest:
        return prefix + "metadata", name, version
    if rest == ["ready"]:
        return prefix + "ready", name, version
    if rest in (["infer"], ["generate"], ["generate_stream"]):
        return ("version_" if version is not None else "") + rest[0], name, version
    return None


def parse_infer(body: bytes, header_length: bytes | None, model: ModelSpec,
                max_rows: int) -> InferRequest:
    """An inference request (JSON header and binary tensor data) as float32 rows for the model.

    The happy path is a handful of type checks; the descriptive ones run to explain a rejection.
    """
    head, binary = body, b""
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise V2Error(400, f"Inference-Header-Content-Length is "
                               f"{header_length.decode('latin-1')!r}: "
                               f"expected the JSON header's size, at most the body's "
                               f"{len(body)} bytes")
        size = int(header_length)
        head, binary = body[:size], body[size:]
        # The same JSON header (no id, same shape and outputs: a client's usual request) with the
        # same amount of tensor data: every check gave the same answer, only the values are new.
        known = model.binary_requests.get(head)
        if known is not None and known.binary_size == len(binary) and known.max_rows == max_rows:
            values = _binary_values(known.datatype, binary, known.rows * model.width)
            return InferRequest(None, known.rows, values, known.outputs)
    try:
        request = orjson.loads(head)
    except orjson.JSONDecodeError as exc:
        if not head.strip():
            raise V2Error(400, "the inference request is empty: send JSON like "
                               '{"inputs": [{"name": "input", "shape": [1, W], '
                               '"datatype": "FP32", "data": [...]}]}') from None
        raise V2Error(400, f"the inference request is not valid JSON: {exc}") from None
    if type(request) is not dict:
        raise V2Error(400, "the inference request must be a JSON object, got "
                           f"{json_kind(request)}")
    rid = request.get("id")
    if rid is not None and type(rid) is not str:
        raise V2Error(400, f"'id' must be a string, got {json_kind(rid)}")
    parameters = request.get("parameters")
    binary_output = False
    if parameters is not None:
        flag = parameters.get("binary_data_output", False) if type(parameters) is dict else None
        binary_output = flag if type(flag) is bool else _flag(
            _object(parameters, "'parameters'"), "binary_data_output", "'parameters'")
    inputs = request.get("inputs")
    if (type(inputs) is not list or len(inputs) != 1 or type(inputs[0]) is not dict
            or inputs[0].get("name") != model.input.name):
        raise _not_the_input(inputs, model)
    if model.items:
        rows, values, used = bytes_items(inputs[0], binary, header_length is not None, max_rows)
    else:
        rows, values, used = _input(inputs[0], binary, header_length is not None, model,
                                    max_rows)
    if used != len(binary):
        raise V2Error(400, f"the body has {len(binary)} bytes after the JSON header "
                           f"(Inference-Header-Content-Length) but the inputs' binary_data_size "
                           f"add up to {used}")
    outputs = request.get("outputs")
    chosen = (model.binary_outputs if binary_output else model.json_outputs) if outputs is None \
        else _outputs(outputs, model, binary_output)
    if (used and rid is None and not model.items and len(head) <= _HEAD_CACHED_BYTES
            and len(model.binary_requests) < _REQUESTS_CACHED):
        model.binary_requests[head] = _Parsed(used, max_rows, rows, DATATYPES[inputs[0]["datatype"]],
                                              chosen)
    return InferRequest(rid, rows, values, chosen)


def _takes(model: ModelSpec) -> str:
    spec = model.input
    return f"model {model.name!r} takes one input, {spec.name!r} ({spec.datatype} " \
           f"{list(spec.shape)})"


def _not_the_input(inputs: object, model: ModelSpec) -> V2Error:
    if type(inputs) is not list or not inputs:
        got = "is missing" if inputs is None else \
            f"must be a non-empty list, got {json_kind(inputs)}"
        return V2Error(400, f"'inputs' {got}: {_takes(model)}")
    names = [i.get("name") if type(i) is dict else None for i in inputs]
    return V2Error(400, f"'inputs' has {', '.join(map(_show_name, names))}: {_takes(model)}")


def _input(tensor: dict[str, Any], binary: bytes, has_header: bool, model: ModelSpec,
           max_rows: int) -> tuple[int, Any, int]:
    width = model.width
    name = tensor.get("datatype")
    dt = DATATYPES.get(name) if type(name) is str else None
    shape = tensor.get("shape")
    if dt is None or type(shape) is not list or len(shape) != 2 or type(shape[0]) is not int \
            or type(shape[1]) is not int or shape[1] != width or shape[0] < 1:
        raise _bad_shape(tensor, model)
    rows = shape[0]
    if rows > max_rows:
        raise V2Error(400, f"input {INPUT_NAME!r} has {rows} rows, over the limit of {max_rows} "
                           "per request (MAX_REQUEST_ROWS): split the batch")
    count = rows * width
    size = binary_size(tensor, binary, has_header)
    if size is None:
        try:
            return rows, to_float32(dt, decode_json(dt, tensor["data"], count)), 0
        except TensorError as exc:
            raise V2Error(400, f"input {INPUT_NAME!r}: {exc.message}") from None
    return rows, _binary_values(dt, binary[:size], count), size


def binary_size(tensor: dict[str, Any], binary: bytes, has_header: bool) -> int | None:
    """The input's ``binary_data_size`` (checked against the bytes that follow the JSON
    header), or None when its values are in its ``data``."""
    parameters = tensor.get("parameters")
    if parameters is None:
        size = None
    elif type(parameters) is dict:
        size = parameters.get("binary_data_size")
    else:
        raise V2Error(400, f"input {INPUT_NAME!r} 'parameters' must be an object, got "
                           f"{json_kind(parameters)}")
    if size is None:
        if "data" not in tensor:
            raise V2Error(400, f"input {INPUT_NAME!r} has no 'data' and no "
                               "parameters.binary_data_size")
        return None
    if type(size) is not int or size < 0 or "data" in tensor or not has_header \
            or size > len(binary):
        raise _bad_binary(tensor, size, has_header, len(binary))
    return size


def _binary_values(dt: Datatype, data: bytes, count: int) -> Any:
    """The input's binary tensor data (``count`` values of ``dt``) as float32."""
    try:
        if dt is _FP32 and len(data) == count * 4:  # the common case: the bytes as they are
            return to_float32(dt, None, data)
        return to_float32(dt, decode_binary(dt, data, count))
    except TensorError as exc:
        raise V2Error(400, f"input {INPUT_NAME!r}: {exc.message}") from None


_FP32 = DATATYPES["FP32"]
_HEADERS_CACHED = 64  # row counts whose all-binary response header is kept
_REQUESTS_CACHED = 64  # binary requests' JSON headers kept parsed (without an id)
_HEAD_CACHED_BYTES = 4096  # and at most this long


def _bad_shape(tensor: dict[str, Any], model: ModelSpec) -> V2Error:
    where = f"input {INPUT_NAME!r}"
    try:
        parse_datatype(tensor.get("datatype"))
        element_count(tensor.get("shape"))
    except TensorError as exc:
        return V2Error(400, f"{where}: {exc.message}")
    shape = tensor["shape"]
    if len(shape) == 2 and shape[1] == model.width and shape[0] == 0:
        return V2Error(400, f"{where} has 0 rows: send at least one")
    return V2Error(400, f"{where} has shape {shape}: {_takes(model)}")


def _bad_binary(tensor: dict[str, Any], size: object, has_header: bool, left: int) -> V2Error:
    where = f"input {INPUT_NAME!r}"
    if type(size) is not int or size < 0:
        return V2Error(400, f"{where}: parameters.binary_data_size must be a non-negative "
                            f"integer, got {size!r}")
    if "data" in tensor:
        return V2Error(400, f"{where} has both 'data' and parameters.binary_data_size: send one")
    if not has_header:
        return V2Error(400, f"{where} has parameters.binary_data_size but the request has no "
                            "Inference-Header-Content-Length header")
    return V2Error(400, f"{where}: parameters.binary_data_size is {size} but only {left} bytes "
                        "follow the JSON header")


def _outputs(requested: object, model: ModelSpec,
             binary_output: bool) -> tuple[tuple[TensorSpec, bool], ...]:
    if type(requested) is not list:
        raise V2Error(400, f"'outputs' must be a list, got {json_kind(requested)}")
    by_name = {o.name: o for o in model.outputs}
    chosen = []
    for item in requested:
        name = item.get("name") if type(item) is dict else None
        if type(name) is not str or name not in by_name:
            known = ", ".join(map(repr, by_name))
            raise V2Error(400, f"'outputs' asks for {_show_name(name, 'an output')}: model "
                               f"{model.name!r} "
                               f"has outputs {known}")
        where = f"output {name!r} 'parameters'"
        parameters = _object(item.get("parameters"), where)
        for unsupported in ("classification", "shared_memory_region"):
            if unsupported in parameters:
                raise V2Error(400, f"{where}: {unsupported!r} is not supported by this server")
        binary = parameters.get("binary_data", binary_output)
        if type(binary) is not bool:
            raise V2Error(400, f"{where}: 'binary_data' must be true or false, got "
                               f"{json_kind(binary)}")
        chosen.append((by_name[name], binary))
    return tuple(chosen)


def encode_response(model: ModelSpec, request: InferRequest,
                    part: Mapping[str, Sequence[Any]]) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary tensor data follows."""
    rows = request.rows
    outputs, blobs = [], []
    # All outputs binary and fixed-size, no id (tritonclient's default): the JSON header depends
    # on the row count only, so it is made once per row count.
    cached = request.id is None and request.outputs is model.binary_outputs and model.fixed_size
    head = model.binary_headers.get(rows) if cached else None
    for spec, binary in request.outputs:
        column = part.get(spec.name)
        dims = spec.shape
        if len(dims) == 1 and column is not None and len(column) == rows:
            flat, shape = column, [rows]  # a column of scalars
        elif (len(dims) == 2 and rows == 1 and column is not None and len(column) == 1
              and type(column[0]) is list and len(column[0]) == dims[1]):
            flat, shape = column[0], [1, dims[1]]  # one row of a [N, K] column
        else:
            flat, shape = _flatten(spec, column, rows)
        dt = spec.dt
        try:
            if binary:
                blob = encode_binary(dt, flat)
                blobs.append(blob)
                if head is None:
                    outputs.append({"name": spec.name, "datatype": spec.datatype,
                                    "shape": shape, "parameters": {"binary_data_size": len(blob)}})
            else:
                outputs.append({"name": spec.name, "datatype": spec.datatype, "shape": shape,
                                "data": encode_json(dt, flat)})
        except TensorError as exc:
            status = 400 if not dt.json or dt.kind == "bytes" else 500
            raise V2Error(status, f"output {spec.name!r}: {exc.message}") from None
    if head is None:
        response: dict[str, Any] = {"model_name": model.name, "model_version": model.version}
        if request.id is not None:
            response["id"] = request.id
        response["outputs"] = outputs
        head = orjson.dumps(response)
        if cached and len(model.binary_headers) < _HEADERS_CACHED:
            model.binary_headers[rows] = head
    if not blobs:
        return head, None
    return b"".join((head, *blobs)), len(head)


def _flatten(spec: TensorSpec, column: Sequence[Any] | None, rows: int) -> tuple[list[Any],
                                                                                  list[int]]:
    if column is None or len(column) != rows:
        got = "none" if column is None else f"{len(column)} items"
        raise V2Error(500, f"inference failed: output {spec.name!r} has {got} for {rows} rows")
    flat = column if isinstance(column, list) else list(column)
    shape = [rows]
    for size in spec.shape[1:]:
        if not all(isinstance(v, (list, tuple)) and len(v) == size for v in flat):
            raise V2Error(500, f"inference failed: output {spec.name!r} does not have the shape "
                               f"{list(spec.shape)} it had at warm-up")
        flat = list(chain.from_iterable(flat))
        shape.append(size)
    return flat, shape


def _object(value: object, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if type(value) is not dict:
        raise V2Error(400, f"{where} must be an object, got {json_kind(value)}")
    return value


def _flag(parameters: Mapping[str, Any], key: str, where: str) -> bool:
    value = parameters.get(key, False)
    if type(value) is not bool:
        raise V2Error(400, f"{where}: {key!r} must be true or false, got {json_kind(value)}")
    return value





def _show_name(name: object, what: str = "an input") -> str:
    return repr(name) if isinstance(name, str) else f"{what} without a name"
