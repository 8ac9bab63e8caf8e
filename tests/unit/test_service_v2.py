"""The Open Inference Protocol's routes, request parsing and response building (pure parts)."""

from __future__ import annotations

import struct
from array import array
from pathlib import Path
from typing import Any

import orjson
import pytest

from service._v2 import (
    InferRequest,
    ModelSpec,
    TensorSpec,
    V2Error,
    default_model_name,
    describe_model,
    encode_response,
    match_route,
    parse_infer,
)

MODEL = ModelSpec("sum", "python", TensorSpec("input", "FP32", (-1, 3)), (
    TensorSpec("predictions", "INT64", (-1,)), TensorSpec("scores", "FP32", (-1, 2))))
PREDICTIONS, SCORES = MODEL.outputs
WHOLE = b"<the whole body>"  # Inference-Header-Content-Length = the body's length
TAKES = "model 'sum' takes one input, 'input' (FP32 [-1, 3])"


def tensor(**fields: Any) -> dict[str, Any]:
    return {"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3], **fields}


def body(*inputs: dict[str, Any], **fields: Any) -> bytes:
    return orjson.dumps({"inputs": list(inputs or [tensor()]), **fields})


@pytest.mark.parametrize("path, expected", [
    ("/v2", ("server_metadata", None, None)),
    ("/v2/health/live", ("live", None, None)),
    ("/v2/health/ready", ("ready", None, None)),
    ("/v2/models/digits", ("model_metadata", "digits", None)),
    ("/v2/models/digits/versions/1", ("model_version_metadata", "digits", "1")),
    ("/v2/models/digits/ready", ("model_ready", "digits", None)),
    ("/v2/models/digits/versions/1/ready", ("model_version_ready", "digits", "1")),
    ("/v2/models/digits/infer", ("infer", "digits", None)),
    ("/v2/models/digits/versions/7/infer", ("version_infer", "digits", "7")),
    ("/v2/health", None), ("/v2/models", None), ("/v2/models/", None),
    ("/v2/models/digits/stats", None), ("/v2/models/digits/versions/1/config", None),
    ("/v2/repository/index", None),
], ids=["server", "live", "ready", "model", "model-version", "model-ready",
        "model-version-ready", "infer", "version-infer", "health-alone", "models-alone",
        "no-name", "stats", "config", "repository"])
def test_v2_paths_map_to_actions(path: str, expected: tuple[str, str | None, str | None] | None
                                 ) -> None:
    assert match_route(path) == expected


@pytest.mark.parametrize("model_name, predictor, expected", [
    ("", "", "digits"), ("mnist", "", "mnist"), ("", "pkg.mod:Echo", "Echo"),
    ("echo", "pkg.mod:Echo", "echo"),
], ids=["model-file-stem", "model-name", "predictor-class", "model-name-wins"])
def test_the_model_is_named_by_model_name_else_its_file_or_class(
        model_name: str, predictor: str, expected: str) -> None:
    assert default_model_name(model_name, predictor, Path("/m/digits.pt")) == expected


def test_metadata_comes_from_the_warm_up_columns_and_declared_datatypes() -> None:
    sample = {"predictions": [0, 1], "scores": [[0.5, 0.5], [0.1, 0.9]], "label": ["a", "b"],
              "ok": [True, False], "cube": [[[1.0, 2.0]], [[3.0, 4.0]]]}
    model = describe_model("m", {"format": "torchscript"}, 3, sample, {"scores": "FP32"})
    assert model.metadata() == {
        "name": "m", "versions": ["1"], "platform": "pytorch_torchscript",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 3]}],
        "outputs": [{"name": "predictions", "datatype": "INT64", "shape": [-1]},
                    {"name": "scores", "datatype": "FP32", "shape": [-1, 2]},
                    {"name": "label", "datatype": "BYTES", "shape": [-1]},
                    {"name": "ok", "datatype": "BOOL", "shape": [-1]},
                    {"name": "cube", "datatype": "FP64", "shape": [-1, 1, 2]}]}


def test_json_and_binary_inputs_become_the_same_float32_rows() -> None:
    as_json = parse_infer(body(tensor(shape=[2, 3], data=[[1, 2, 3], [4, 5, 6]])), None, MODEL,
                          8)
    raw = struct.pack("<6f", 1, 2, 3, 4, 5, 6)
    head = orjson.dumps({"inputs": [{"name": "input", "shape": [2, 3], "datatype": "FP32",
                                     "parameters": {"binary_data_size": 24}}]})
    as_binary = parse_infer(head + raw, b"%d" % len(head), MODEL, 8)
    for request in (as_json, as_binary):
        assert (request.rows, request.values) == (2, array("f", [1, 2, 3, 4, 5, 6]))
        assert request.outputs == ((PREDICTIONS, False), (SCORES, False))


@pytest.mark.parametrize("fields, expected", [
    ({}, ((PREDICTIONS, False), (SCORES, False))),
    ({"parameters": {"binary_data_output": True}}, ((PREDICTIONS, True), (SCORES, True))),
    ({"outputs": [{"name": "scores"}]}, ((SCORES, False),)),
    ({"outputs": [{"name": "scores", "parameters": {"binary_data": True}}, {"name": "predictions"}]},
     ((SCORES, True), (PREDICTIONS, False))),
    ({"parameters": {"binary_data_output": True},
      "outputs": [{"name": "scores", "parameters": {"binary_data": False}}]}, ((SCORES, False),)),
], ids=["all-json", "all-binary", "one", "in-the-order-asked", "per-output-overrides"])
def test_outputs_are_chosen_by_name_each_as_json_or_binary(
        fields: dict[str, Any], expected: tuple[tuple[TensorSpec, bool], ...]) -> None:
    assert parse_infer(body(**fields), None, MODEL, 8).outputs == expected


@pytest.mark.parametrize("raw, header, message", [
    (b"", None, ('the inference request is empty: send JSON like {"inputs": [{"name": "input", '
                 '"shape": [1, W], "datatype": "FP32", "data": [...]}]}')),
    (b'{"inputs": [', None, ("the inference request is not valid JSON: unexpected end of data: "
                            "line 1 column 13 (char 12)")),
    (b"[1]", None, "the inference request must be a JSON object, got a list"),
    (b"{}", None, f"'inputs' is missing: {TAKES}"),
    (b'{"inputs": {}}', None, f"'inputs' must be a non-empty list, got an object: {TAKES}"),
    (b'{"inputs": []}', None, f"'inputs' must be a non-empty list, got a list: {TAKES}"),
    (body(tensor(name="x")), None, f"'inputs' has 'x': {TAKES}"),
    (body(tensor(), tensor(name="y")), None, f"'inputs' has 'input', 'y': {TAKES}"),
    (body({"shape": [1, 3]}), None, f"'inputs' has an input without a name: {TAKES}"),
    (body(id=42), None, "'id' must be a string, got a number"),
    (body(parameters=[]), None, "'parameters' must be an object, got a list"),
    (body(parameters={"binary_data_output": 1}), None,
     "'parameters': 'binary_data_output' must be true or false, got a number"),
    (body(tensor(datatype="FLOAT")), None,
     ("input 'input': datatype 'FLOAT' is not a tensor datatype: use one of BOOL, UINT8, UINT16, "
     "UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64, BF16, BYTES")),
    (body(tensor(shape=[3])), None, f"input 'input' has shape [3]: {TAKES}"),
    (body(tensor(shape=[1, 4])), None, f"input 'input' has shape [1, 4]: {TAKES}"),
    (body(tensor(shape=[0, 3], data=[])), None, "input 'input' has 0 rows: send at least one"),
    (body(tensor(shape=[9, 3], data=[0] * 27)), None,
     ("input 'input' has 9 rows, over the limit of 8 per request (MAX_REQUEST_ROWS): split the "
     "batch")),
    (body(tensor(shape="1,3")), None,
     "input 'input': shape a string is not a list of non-negative integers"),
    (body(tensor(data=[1, 2])), None, "input 'input': 'data' has 2 values but the shape holds 3"),
    (body(tensor(data=[1, 2, "3"])), None,
     "input 'input': FP32 'data' must hold numbers, found a string"),
    (body(tensor(data=[1, 2, 1e39])), None,
     ("input 'input': a value is not finite or outside float32's range (about ±3.4e38), which "
     "this model takes")),
    (body(tensor(datatype="BYTES", data=["a", "b", "c"])), None,
     "input 'input': BYTES cannot be the input of this model: it takes numbers"),
    (body(tensor(datatype="BF16")), None,
     "input 'input': BF16 has no JSON form: send it as binary data (parameters.binary_data_size)"),
    (body({"name": "input", "shape": [1, 3], "datatype": "FP32"}), None,
     "input 'input' has no 'data' and no parameters.binary_data_size"),
    (body(tensor(parameters={"binary_data_size": 12})), WHOLE,
     "input 'input' has both 'data' and parameters.binary_data_size: send one"),
    (body(tensor(data=None, parameters={"binary_data_size": -1})), WHOLE,
     "input 'input': parameters.binary_data_size must be a non-negative integer, got -1"),
    (body({"name": "input", "shape": [1, 3], "datatype": "FP32",
           "parameters": {"binary_data_size": 12}}), None,
     ("input 'input' has parameters.binary_data_size but the request has no "
     "Inference-Header-Content-Length header")),
    (b"{}", b"x", ("Inference-Header-Content-Length is 'x': expected the JSON header's size, at "
                  "most the body's 2 bytes")),
    (b"{}", b"3", ("Inference-Header-Content-Length is '3': expected the JSON header's size, at "
                  "most the body's 2 bytes")),
    (body() + b"\x00\x00", b"%d" % len(body()),
     ("the body has 2 bytes after the JSON header (Inference-Header-Content-Length) but the "
     "inputs' binary_data_size add up to 0")),
    (body(outputs={"name": "scores"}), None, "'outputs' must be a list, got an object"),
    (body(outputs=[{"name": "logits"}]), None,
     "'outputs' asks for 'logits': model 'sum' has outputs 'predictions', 'scores'"),
    (body(outputs=[{"name": ["scores"]}]), None,
     ("'outputs' asks for an output without a name: model 'sum' has outputs 'predictions', "
      "'scores'")),
    (b"{}", "é".encode("latin-1"), ("Inference-Header-Content-Length is 'é': expected the JSON "
                                   "header's size, at most the body's 2 bytes")),
    (body(outputs=[{"name": "scores", "parameters": {"classification": 3}}]), None,
     "output 'scores' 'parameters': 'classification' is not supported by this server"),
    (body(outputs=[{"name": "scores", "parameters": {"binary_data": "yes"}}]), None,
     "output 'scores' 'parameters': 'binary_data' must be true or false, got a string"),
], ids=["empty", "malformed", "not-an-object", "no-inputs", "inputs-object", "inputs-empty",
        "wrong-input-name", "two-inputs", "nameless-input", "id-not-string", "parameters-list",
        "binary-data-output-not-bool", "unknown-datatype", "1d-shape", "wrong-width",
        "zero-rows", "too-many-rows", "shape-string", "data-short", "data-string",
        "beyond-float32", "bytes-input", "bf16-json", "no-data", "data-and-binary",
        "negative-binary-size", "binary-without-header", "header-not-a-number",
        "header-past-the-body", "binary-left-over", "outputs-object", "unknown-output",
        "output-name-not-a-string", "header-not-ascii", "classification", "binary-data-not-bool"])
def test_bad_inference_requests_get_400_saying_what_is_wrong(raw: bytes, header: bytes | None,
                                                             message: str) -> None:
    if header is WHOLE:
        header = b"%d" % len(raw)
    with pytest.raises(V2Error) as caught:
        parse_infer(raw, header, MODEL, 8)
    assert (caught.value.status, caught.value.message) == (400, message)


def test_binary_size_past_the_end_of_the_body_is_rejected() -> None:
    head = orjson.dumps({"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32",
                                     "parameters": {"binary_data_size": 12}}]})
    with pytest.raises(V2Error) as caught:
        parse_infer(head + b"\x00" * 8, b"%d" % len(head), MODEL, 8)
    assert caught.value.message == ("input 'input': parameters.binary_data_size is 12 but only 8 "
                                    "bytes follow the JSON header")


def test_parameters_of_an_input_must_be_an_object() -> None:
    with pytest.raises(V2Error) as caught:
        parse_infer(body(tensor(parameters=[])), None, MODEL, 8)
    assert caught.value.message == "input 'input' 'parameters' must be an object, got a list"


@pytest.mark.parametrize("datatype, raw", [
    ("FP32", struct.pack("<3f", float("nan"), 0, 0)),
    ("FP32", struct.pack("<3f", float("inf"), 0, 0)),
    ("FP64", struct.pack("<3d", 1e300, 0, 0)),
], ids=["fp32-nan", "fp32-inf", "fp64-beyond-float32"])
def test_binary_values_the_model_cannot_take_are_rejected(datatype: str, raw: bytes) -> None:
    head = orjson.dumps({"inputs": [{"name": "input", "shape": [1, 3], "datatype": datatype,
                                     "parameters": {"binary_data_size": len(raw)}}]})
    with pytest.raises(V2Error) as caught:
        parse_infer(head + raw, b"%d" % len(head), MODEL, 8)
    assert (caught.value.status, caught.value.message) == (400, (
        "input 'input': a value is not finite or outside float32's range (about ±3.4e38), "
        "which this model takes"))


def test_the_response_echoes_the_id_and_puts_binary_outputs_after_the_json() -> None:
    part = {"predictions": [1, 0], "scores": [[0.25, 0.75], [1.0, 0.0]]}
    request = InferRequest("r-1", 2, array("f"), ((SCORES, True), (PREDICTIONS, False)))
    content, header_length = encode_response(MODEL, request, part)
    assert header_length is not None
    assert orjson.loads(content[:header_length]) == {
        "model_name": "sum", "model_version": "1", "id": "r-1", "outputs": [
            {"name": "scores", "datatype": "FP32", "shape": [2, 2],
             "parameters": {"binary_data_size": 16}},
            {"name": "predictions", "datatype": "INT64", "shape": [2], "data": [1, 0]}]}
    assert content[header_length:] == struct.pack("<4f", 0.25, 0.75, 1.0, 0.0)


def test_an_all_json_response_has_no_header_length_and_no_id_when_none_was_sent() -> None:
    request = InferRequest(None, 1, array("f"), ((PREDICTIONS, False),))
    content, header_length = encode_response(MODEL, request, {"predictions": [3], "scores": []})
    assert header_length is None
    assert orjson.loads(content) == {"model_name": "sum", "model_version": "1", "outputs": [
        {"name": "predictions", "datatype": "INT64", "shape": [1], "data": [3]}]}


@pytest.mark.parametrize("part, status, message", [
    ({"predictions": [1]}, 500, "inference failed: output 'scores' has none for 1 rows"),
    ({"predictions": [1], "scores": [[0.5]]}, 500,
     "inference failed: output 'scores' does not have the shape [-1, 2] it had at warm-up"),
    ({"predictions": [1.5], "scores": [[0.5, 0.5]]}, 500,
     "output 'predictions': a value does not fit INT64: required argument is not an integer"),
], ids=["missing-output", "shape-changed", "value-does-not-fit"])
def test_outputs_that_break_their_metadata_are_a_server_error(
        part: dict[str, Any], status: int, message: str) -> None:
    request = InferRequest(None, 1, array("f"), ((PREDICTIONS, True), (SCORES, True)))
    with pytest.raises(V2Error) as caught:
        encode_response(MODEL, request, part)
    assert (caught.value.status, caught.value.message) == (status, message)


@pytest.mark.parametrize("datatype, values, status, message", [
    ("BF16", [1.0], 400, ("output 'out': BF16 has no JSON form: request it as binary data "
                         "(parameters.binary_data)")),
    ("BYTES", [b"\xff"], 400, ("output 'out': holds bytes that are not UTF-8: request it as "
                              "binary data (parameters.binary_data)")),
], ids=["bf16", "bytes-not-utf8"])
def test_outputs_without_a_json_form_must_be_asked_for_as_binary(
        datatype: str, values: list[Any], status: int, message: str) -> None:
    out = TensorSpec("out", datatype, (-1,))
    model = ModelSpec("m", "python", MODEL.input, (out,))
    with pytest.raises(V2Error) as caught:
        encode_response(model, InferRequest(None, 1, array("f"), ((out, False),)), {"out": values})
    assert (caught.value.status, caught.value.message) == (status, message)


def test_all_binary_headers_are_made_once_per_row_count_and_stay_exact() -> None:
    model = ModelSpec("sum", "python", MODEL.input, MODEL.outputs)
    part = {"predictions": [1], "scores": [[0.5, 0.25]]}
    plain = InferRequest(None, 1, array("f"), model.binary_outputs)
    first, second = (encode_response(model, plain, part) for _ in range(2))
    with_id = encode_response(model, InferRequest("x", 1, array("f"), model.binary_outputs), part)
    assert first == second and list(model.binary_headers) == [1]
    content, size = first
    assert size is not None and orjson.loads(content[:size]) == {
        "model_name": "sum", "model_version": "1", "outputs": [
            {"name": "predictions", "datatype": "INT64", "shape": [1],
             "parameters": {"binary_data_size": 8}},
            {"name": "scores", "datatype": "FP32", "shape": [1, 2],
             "parameters": {"binary_data_size": 8}}]}
    assert content[size:] == struct.pack("<q2f", 1, 0.5, 0.25)
    head, size_with_id = with_id
    assert size_with_id is not None and orjson.loads(head[:size_with_id])["id"] == "x"


def binary_request(rows: int = 1, values: bytes | None = None, extra: bytes = b"",
                   **fields: Any) -> tuple[bytes, bytes]:
    """A body with FP32 binary tensor data (``rows`` x 3) and its header length."""
    data = struct.pack(f"<{3 * rows}f", *range(3 * rows)) if values is None else values
    head = orjson.dumps({"inputs": [{"name": "input", "shape": [rows, 3], "datatype": "FP32",
                                     "parameters": {"binary_data_size": 12 * rows}}],
                         "parameters": {"binary_data_output": True}, **fields})
    return head + data + extra, b"%d" % len(head)


def fresh_model() -> ModelSpec:
    return ModelSpec("sum", "python", MODEL.input, MODEL.outputs)


def outcome(model: ModelSpec, raw: bytes, header: bytes, max_rows: int = 8) -> object:
    try:
        request = parse_infer(raw, header, model, max_rows)
    except V2Error as exc:
        return exc.status, exc.message
    return request.id, request.rows, request.values.tobytes(), request.outputs


def test_a_binary_request_header_is_parsed_once_then_only_its_values_are_read() -> None:
    model = fresh_model()
    first = parse_infer(*binary_request(2), model, 8)
    raw, header = binary_request(2, struct.pack("<6f", 9, 8, 7, 6, 5, 4))
    again = parse_infer(raw, header, model, 8)
    assert list(model.binary_requests) == [raw[:int(header)]]
    assert (first.rows, first.values) == (2, array("f", range(6)))
    assert (again.id, again.rows, again.values) == (None, 2, array("f", [9, 8, 7, 6, 5, 4]))
    # the same outputs object: encode_response's cached all-binary header still applies
    assert first.outputs is again.outputs is model.binary_outputs


@pytest.mark.parametrize("raw, header, max_rows", [
    (*binary_request(1, struct.pack("<3f", 5, 6, 7)), 8),
    (*binary_request(1, struct.pack("<3f", float("nan"), 0, 0)), 8),
    (*binary_request(1, struct.pack("<3f", float("-inf"), 0, 0)), 8),
    (*binary_request(1, b"\x00" * 8), 8),
    (*binary_request(1, extra=b"\x00" * 4), 8),
    (*binary_request(1), 0),
    (binary_request(1)[0], b"7", 8),
], ids=["new-values", "nan", "minus-inf", "data-short", "data-left-over", "max-rows-lower",
        "other-header-length"])
def test_a_known_binary_header_answers_exactly_as_a_fresh_parse(raw: bytes, header: bytes,
                                                                max_rows: int) -> None:
    warm = fresh_model()
    parse_infer(*binary_request(1), warm, 8)  # the same JSON header, parsed and kept
    assert len(warm.binary_requests) == 1
    assert outcome(warm, raw, header, max_rows) == outcome(fresh_model(), raw, header, max_rows)


@pytest.mark.parametrize("raw, header", [
    binary_request(id="r-1"),
    (body(tensor()), b"%d" % len(body(tensor()))),
    binary_request(outputs=[{"name": "scores", "parameters": {"pad": "x" * 4096}}]),
], ids=["with-an-id", "json-data", "header-over-4096-bytes"])
def test_binary_headers_not_worth_keeping_are_parsed_every_time(raw: bytes, header: bytes) -> None:
    model = fresh_model()
    for _ in range(2):
        parse_infer(raw, header, model, 8)
    assert model.binary_requests == {}


def test_at_most_64_binary_headers_are_kept() -> None:
    model = fresh_model()
    for rows in range(1, 71):
        parse_infer(*binary_request(rows), model, 100)
    assert len(model.binary_requests) == 64
    request = parse_infer(*binary_request(70), model, 100)  # not kept: parsed, still right
    assert (request.rows, request.values) == (70, array("f", range(210)))
