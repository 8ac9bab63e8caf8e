"""The OpenAPI entries of the Open Inference Protocol's ``/v2`` routes, written by hand: the
routes are served by :class:`service._v2.V2Server` outside FastAPI, so nothing generates them."""

from __future__ import annotations

from typing import Any

from service._tensors import DATATYPES
from service._v2 import INPUT_NAME, MODEL_VERSION, ROUTES

__all__ = ["TIMEOUT_PARAMETER", "openapi_paths"]

# The per-request deadline, on /predict and the v2 infer routes alike.
TIMEOUT_PARAMETER = {
    "name": "X-Request-Timeout", "in": "header", "required": False,
    "description": "seconds this request may wait in the queue before it is answered "
                   "504 (0: no deadline; default REQUEST_TIMEOUT_SECONDS)",
    "schema": {"type": "number", "minimum": 0, "maximum": 86400}}


def openapi_paths(model_name: str) -> dict[str, Any]:
    """Hand-written OpenAPI path items for the ``/v2`` routes (served outside FastAPI)."""
    error = {"description": "", "content": {"application/json": {"schema": {
        "type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}}}}

    def errors(*codes: int) -> dict[str, Any]:
        what = {400: "a bad request: the message says what is wrong",
                404: "unknown model or version",
                406: "the model does not stream: its predictor has no stream()", 413: "the body is over MAX_BODY_BYTES",
                503: "the model is not ready or the queue is full (Retry-After says when to "
                     "try again)",
                504: "the request's deadline passed while it waited in the queue"}
        return {str(c): {**error, "description": what[c]} for c in codes}

    name = {"name": "model_name", "in": "path", "required": True,
            "schema": {"type": "string", "example": model_name}}
    version = {"name": "model_version", "in": "path", "required": True,
               "schema": {"type": "string", "example": MODEL_VERSION}}
    tensor_properties: dict[str, Any] = {
        "name": {"type": "string"}, "datatype": {"type": "string", "enum": list(DATATYPES)},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}}}
    ok_json = {"application/json": {"schema": {"type": "object"}}}

    def get(summary: str, params: list[dict[str, Any]], codes: tuple[int, ...]) -> dict[str, Any]:
        return {"get": {"summary": summary, "tags": ["open inference protocol"],
                        "parameters": params,
                        "responses": {"200": {"description": "OK", "content": ok_json},
                                      **errors(*codes)}}}

    request_schema = {"type": "object", "required": ["inputs"], "properties": {
        "id": {"type": "string"},
        "parameters": {"type": "object", "properties": {
            "binary_data_output": {"type": "boolean"}}},
        "inputs": {"type": "array", "minItems": 1, "maxItems": 1, "items": {
            "type": "object", "required": ["name", "datatype", "shape"],
            "properties": {**tensor_properties, "data": {"type": "array"},
                           "parameters": {"type": "object", "properties": {
                               "binary_data_size": {"type": "integer", "minimum": 0}}}}}},
        "outputs": {"type": "array", "items": {"type": "object", "required": ["name"],
            "properties": {"name": {"type": "string"}, "parameters": {"type": "object",
                "properties": {"binary_data": {"type": "boolean"}}}}}},
    }, "example": {"id": "42", "inputs": [{"name": INPUT_NAME, "shape": [1, 64],
                                           "datatype": "FP32", "data": [0.0] * 64}]}}

    def infer(params: list[dict[str, Any]]) -> dict[str, Any]:
        header = {"name": "Inference-Header-Content-Length", "in": "header", "required": False,
                  "description": "the JSON header's length when binary tensor data follows it",
                  "schema": {"type": "integer", "minimum": 0}}
        return {"post": {
            "summary": "Infer: joins the same batches as POST /predict",
            "tags": ["open inference protocol"], "parameters": [*params, header, TIMEOUT_PARAMETER],
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": request_schema},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
            "responses": {"200": {"description": "the outputs (binary tensor data after the "
                                                 "JSON header when requested)",
                                  "content": {**ok_json, "application/octet-stream": {
                                      "schema": {"type": "string", "format": "binary"}}}},
                          **errors(400, 404, 413, 503, 504)}}}

    def generate(params: list[dict[str, Any]], stream: bool) -> dict[str, Any]:
        out = {"type": "object", "properties": {
            "model_name": {"type": "string"}, "model_version": {"type": "string"},
            "text_output": {"type": "string"}}}
        content = ({"text/event-stream": {"schema": {"type": "string", "description": (
            "one 'data: <JSON>' event per chunk, each with its text_output")}}}
            if stream else {"application/json": {"schema": out}})
        return {"post": {
            "summary": ("Generate, streamed as Server-Sent Events" if stream else "Generate")
                       + " (Triton's generate extension; a predictor with stream())",
            "tags": ["open inference protocol"], "parameters": params,
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["text_input"], "properties": {
                    "text_input": {"type": "string"},
                    "parameters": {"type": "object", "properties": {
                        "max_tokens": {"type": "integer", "minimum": 1},
                        "temperature": {"type": "number", "minimum": 0},
                        "stop": {"type": "array", "items": {"type": "string"}}}}}},
                "example": {"text_input": "Once upon a time",
                            "parameters": {"max_tokens": 16}}}}},
            "responses": {"200": {"description": "the generated text", "content": content},
                          **errors(400, 404, 406, 503)}}}

    return {
        ROUTES["server_metadata"]: get("Server metadata", [], ()),
        ROUTES["live"]: get("Server live", [], (503,)),
        ROUTES["ready"]: get("Server ready", [], (503,)),
        ROUTES["model_metadata"]: get("Model metadata", [name], (404, 503)),
        ROUTES["model_version_metadata"]: get("Model metadata", [name, version], (404, 503)),
        ROUTES["model_ready"]: get("Model ready", [name], (404, 503)),
        ROUTES["model_version_ready"]: get("Model ready", [name, version], (404, 503)),
        ROUTES["infer"]: infer([name]),
        ROUTES["version_infer"]: infer([name, version]),
        ROUTES["generate"]: generate([name], False),
        ROUTES["generate_stream"]: generate([name], True),
        ROUTES["version_generate"]: generate([name, version], False),
        ROUTES["version_generate_stream"]: generate([name, version], True),
    }
