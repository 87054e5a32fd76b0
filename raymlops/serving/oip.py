"""The Open Inference Protocol (KServe v2), JSON form: infer requests to a DataFrame.

A tabular model takes one input tensor per column, by name: ``{"name": "age",
"datatype": "FP64", "shape": [2], "data": [41, 35]}``, text columns as ``BYTES``. Values
are left as sent; the model's row normalization (``raymlops.features``) turns them into
inputs exactly as for the MLflow protocol, so both protocols score a row alike. Errors
are ``{"error": "..."}`` naming the tensor, as KServe answers.

This is the JSON body under the application's route (``/<model>/v2/...``); the binary
tensor extension, the standard root paths and ``tritonclient`` come with the serving
shape that co-locates versions.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from raymlops.serving.protocol import MAX_ROWS, BadRequest, no_json_constants, unique_keys

DATATYPES = {"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
             "FP16", "FP32", "FP64", "BYTES"}


def _flatten(data: Any, name: str) -> list[Any]:
    if not isinstance(data, list):
        raise BadRequest(f"inputs.{name}.data", "expected a list of values")
    flat: list[Any] = []
    for item in data:
        if isinstance(item, list):
            flat.extend(_flatten(item, name))
        elif isinstance(item, dict):
            raise BadRequest(f"inputs.{name}.data", "a tensor holds values, not objects")
        else:
            flat.append(item)
    return flat


def _tensor(i: int, tensor: Any) -> tuple[str, list[Any]]:
    """(name, flat values) of one input tensor, its datatype and shape checked."""
    if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
        raise BadRequest(f"inputs[{i}]", "expected a tensor with name, shape, datatype, data")
    name = tensor["name"]
    if tensor.get("datatype") not in DATATYPES:
        raise BadRequest(f"inputs.{name}.datatype",
                         f"expected one of {', '.join(sorted(DATATYPES))}")
    shape = tensor.get("shape")
    if not (isinstance(shape, list) and shape and all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        raise BadRequest(f"inputs.{name}.shape", "expected a list of sizes")
    data = _flatten(tensor.get("data"), name)
    size = 1
    for d in shape:
        size *= d
    if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1) or size != len(data):
        raise BadRequest(f"inputs.{name}.shape", f"shape {shape} does not hold the "
                         f"{len(data)} values sent; a column is [n] or [n, 1]")
    return name, data


def parse_infer(body: bytes, columns: list[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(rows, request) of an infer request; every model input column is one tensor."""
    if not body:
        raise BadRequest("body", "the request body is empty")
    try:
        payload = json.loads(body, parse_constant=no_json_constants,
                             object_pairs_hook=unique_keys)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadRequest("body", f"not valid JSON: {exc}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list):
        raise BadRequest("inputs", "expected an object with a list of input tensors")
    tensors: dict[str, list[Any]] = {}
    for i, tensor in enumerate(payload["inputs"]):
        name, data = _tensor(i, tensor)
        if name in tensors:
            raise BadRequest(f"inputs.{name}", "the tensor appears twice")
        tensors[name] = data
    missing = [c for c in columns if c not in tensors]
    if missing:
        raise BadRequest(f"inputs.{missing[0]}", "required input tensor is missing "
                         f"({len(missing)} missing: {', '.join(missing[:10])})")
    rows = {len(v) for v in tensors.values()}
    if len(rows) > 1:
        raise BadRequest("inputs", "every input tensor must hold the same number of rows")
    count = rows.pop() if rows else 0
    if count == 0:
        raise BadRequest("inputs", "the request holds no rows")
    if count > MAX_ROWS:
        raise BadRequest("inputs", f"{count} rows exceed the limit of {MAX_ROWS} per request",
                         status=413)
    frame = pd.DataFrame({name: pd.Series(values, dtype=object)
                          for name, values in tensors.items()})
    return frame, payload


def infer_response(model: str, version: str, request_id: str,
                   predictions: list[float]) -> dict[str, Any]:
    return {"model_name": model, "model_version": version, "id": request_id,
            "outputs": [{"name": "predictions", "datatype": "FP64",
                         "shape": [len(predictions)], "data": predictions}]}


def error(err: BadRequest) -> dict[str, Any]:
    return {"error": f"{err.field}: {err.message}"}
