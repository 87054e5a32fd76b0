"""The OpenAPI 3.1 document of a served model's whole HTTP API (``GET /openapi.json``).

Written from the same constants the frontend routes by; the fuzz test
(``tests/integration/test_serving_http.py``) draws its paths from it.
"""

from __future__ import annotations

from typing import Any

from raymlops.serving.oip import DATATYPES, OUTPUTS
from raymlops.serving.protocol import OUTPUTS as PARAM_OUTPUTS

_MLFLOW_ERROR = {"type": "object", "required": ["error_code", "message"], "properties": {
    "error_code": {"type": "string"}, "message": {"type": "string"},
    "field": {"type": "string"}, "row": {"type": "integer"}}}
_OIP_ERROR = {"type": "object", "required": ["error"],
              "properties": {"error": {"type": "string"}}}


def _errors(schema: dict[str, Any], codes: tuple[int, ...]) -> dict[str, Any]:
    return {str(c): {"description": "client error naming the field", "content": {
        "application/json": {"schema": schema}}} for c in codes}


def _get(summary: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    content = {"application/json": {"schema": schema or {"type": "object"}}}
    return {"get": {"summary": summary, "responses": {"200": {"description": "ok",
                                                              "content": content}}}}


def document(app: str, described: dict[str, Any], *, sticky_header: str = "x-routing-key",
             versions: list[str] | None = None, prefix: str | None = None) -> dict[str, Any]:
    columns: list[str] = list(described["columns"])
    numeric = set(described["numeric"])
    value = {"type": ["number", "string", "boolean", "null"]}
    row = {"type": "object", "properties": dict.fromkeys(columns, value),
           "required": columns}
    scoring = {"type": "object", "minProperties": 1, "maxProperties": 2, "properties": {
        "dataframe_split": {"type": "object", "required": ["columns", "data"], "properties": {
            "columns": {"type": "array", "items": {"type": "string"}},
            "data": {"type": "array", "items": {"type": "array", "items": value}}}},
        "dataframe_records": {"type": "array", "items": row},
        "instances": {"type": "array", "items": {"oneOf": [row, {"type": "array"}]}},
        "inputs": {"oneOf": [{"type": "object"}, {"type": "array"}]},
        "params": {"type": "object", "properties": {"output": {"enum": list(PARAM_OUTPUTS)}},
                   "additionalProperties": False}}, "additionalProperties": False}
    tensor = {"type": "object", "required": ["name", "shape", "datatype"], "properties": {
        "name": {"enum": columns}, "shape": {"type": "array", "items": {"type": "integer"}},
        "datatype": {"enum": sorted(DATATYPES)}, "data": {"type": "array"},
        "parameters": {"type": "object"}}}
    infer = {"type": "object", "required": ["inputs"], "properties": {
        "id": {"type": "string"}, "inputs": {"type": "array", "items": tensor},
        "outputs": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"enum": list(OUTPUTS)}, "parameters": {"type": "object"}}}},
        "parameters": {"type": "object"}}}
    headers = [{"name": sticky_header, "in": "header", "required": False,
                 "description": "sticky routing key", "schema": {"type": "string"}},
                {"name": "x-raymlops-version", "in": "header", "required": False,
                 "description": "pin a live version (where deploy.routing.allow_override)",
                 "schema": {"enum": list(versions or [])}}]
    invocations = {"post": {
        "summary": "MLflow scoring protocol", "requestBody": {"required": True, "content": {
            "application/json": {"schema": scoring},
            "text/csv": {"schema": {"type": "string"}}}},
        "parameters": headers,
        "responses": {"200": {"description": "predictions; X-Model-Version says which "
                              "version answered", "content": {"application/json": {
                                  "schema": {"type": "object", "properties": {
                                      "predictions": {"type": "array"}}}}}},
                      **_errors(_MLFLOW_ERROR, (400, 403, 404, 405, 413, 415))}}}
    infer_op = {"post": {
        "summary": "Open Inference Protocol v2 infer (JSON, or the binary tensor extension "
                   "with Inference-Header-Content-Length)",
        "parameters": headers,
        "requestBody": {"required": True, "content": {"application/json": {"schema": infer},
                                                      "application/octet-stream": {}}},
        "responses": {"200": {"description": "outputs with model_version"},
                      **_errors(_OIP_ERROR, (400, 403, 404, 405, 413))}}}
    model_meta = {"type": "object", "properties": {
        "name": {"const": app}, "versions": {"type": "array"},
        "inputs": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"enum": columns}, "datatype": {"type": "string"}}}}}}
    paths: dict[str, Any] = {}
    for base_path in ("", prefix or f"/{app}"):
        paths[f"{base_path}/invocations"] = invocations
        paths[f"{base_path}/ping"] = _get("liveness (MLflow)")
        paths[f"{base_path}/health"] = _get("health with the live weights")
        paths[f"{base_path}/version"] = _get("the MLflow version", {"type": "string"})
        paths[f"{base_path}/openapi.json"] = _get("this document")
        paths[f"{base_path}/v2"] = _get("server metadata")
        paths[f"{base_path}/v2/health/live"] = _get("server live")
        paths[f"{base_path}/v2/health/ready"] = _get("server ready")
        base = f"{base_path}/v2/models/{app}"
        paths[base] = _get("model metadata", model_meta)
        paths[f"{base}/ready"] = _get("model ready")
        paths[f"{base}/config"] = _get("model configuration (Triton style)")
        paths[f"{base}/infer"] = infer_op
        for version in versions or []:
            paths[f"{base}/versions/{version}"] = _get(f"version {version} metadata",
                                                       model_meta)
            paths[f"{base}/versions/{version}/infer"] = infer_op
    return {"openapi": "3.1.0", "info": {
        "title": f"raymlops: {app}", "version": "1",
        "description": f"Scoring API of {app}. Inputs: "
                       + ", ".join(f"{c} ({'number' if c in numeric else 'text'})"
                                   for c in columns)}, "paths": paths}
