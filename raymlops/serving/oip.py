"""The Open Inference Protocol (KServe v2): infer requests to a DataFrame, and back.

A tabular model takes one input tensor per column, by name: ``{"name": "age",
"datatype": "FP64", "shape": [2], "data": [41, 35]}``, text columns as ``BYTES``. Values
are left as sent; the model's row normalization (``raymlops.features``) turns them into
inputs exactly as for the MLflow protocol, so both protocols score a row alike.

Both bodies are read: JSON, and the binary tensor extension that ``tritonclient`` sends
by default (an ``Inference-Header-Content-Length`` header giving the JSON header's
length, then the raw tensors, each input saying its ``binary_data_size``; BYTES
elements are a 4-byte little-endian length and the bytes). Outputs come back binary
when asked (``binary_data_output``, or ``binary_data`` on a requested output). Errors
are ``{"error": "..."}`` naming the tensor, as KServe answers.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pandas as pd

from raymlops.serving.protocol import (
    MAX_ROWS,
    BadRequest,
    Rows,
    no_json_constants,
    unique_keys,
)

HEADER_LENGTH = "inference-header-content-length"
#: fixed-size datatypes and their little-endian numpy types
NUMPY = {"BOOL": "?", "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
         "INT8": "<i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8", "FP16": "<f2",
         "FP32": "<f4", "FP64": "<f8"}
DATATYPES = {*NUMPY, "BYTES"}
OUTPUTS = {"predictions": "FP64", "decisions": "INT64"}
#: request parameters this server reads; others (a client's own) are passed over
PARAMETERS = ("binary_data_output", "output")


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


def _check_values(name: str, datatype: str, data: list[Any]) -> None:
    if datatype == "BYTES":
        bad = next((v for v in data if not isinstance(v, str | type(None))), "ok")
        if bad != "ok":
            raise BadRequest(f"inputs.{name}.data", f"a BYTES tensor holds text; got {bad!r}")
        return
    want = bool if datatype == "BOOL" else (int | float)
    for value in data:
        if value is None:
            continue
        if not isinstance(value, want) or (datatype != "BOOL" and isinstance(value, bool)):
            raise BadRequest(f"inputs.{name}.data", f"a {datatype} tensor holds numbers; "
                             f"got {value!r}")


def _shape(name: str, shape: Any) -> int:
    """The number of elements of a tensor shape; a column is ``[n]`` or ``[n, 1]``."""
    if not (isinstance(shape, list) and shape and all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        raise BadRequest(f"inputs.{name}.shape", "expected a list of sizes")
    if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
        raise BadRequest(f"inputs.{name}.shape", f"shape {shape}: a column is [n] or [n, 1]")
    return int(shape[0])


def _binary_values(name: str, datatype: str, raw: bytes, count: int) -> list[Any]:
    field = f"inputs.{name}"
    if datatype == "BYTES":
        out: list[Any] = []
        at = 0
        for _ in range(count):
            if at + 4 > len(raw):
                raise BadRequest(field, "the binary BYTES tensor ends early")
            (size,) = struct.unpack_from("<I", raw, at)
            at += 4
            if at + size > len(raw):
                raise BadRequest(field, "the binary BYTES tensor ends early")
            try:
                out.append(raw[at:at + size].decode("utf-8"))
            except UnicodeDecodeError:
                raise BadRequest(field, "a BYTES element is not UTF-8 text") from None
            at += size
        if at != len(raw):
            raise BadRequest(field, f"binary_data_size {len(raw)} does not match the "
                             f"{count} elements of its shape")
        return out
    dtype = np.dtype(NUMPY[datatype])
    if len(raw) != dtype.itemsize * count:
        raise BadRequest(f"{field}.parameters.binary_data_size",
                         f"{len(raw)} bytes do not hold {count} {datatype} values "
                         f"({dtype.itemsize} bytes each)")
    values = np.frombuffer(raw, dtype=dtype)
    return values.tolist()


def _input(i: int, tensor: Any, tail: bytes, offset: int) -> tuple[str, list[Any], int]:
    """(name, values, offset after it) of one input tensor, JSON or binary."""
    if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
        raise BadRequest(f"inputs[{i}]", "expected a tensor with name, shape, datatype, data")
    name = tensor["name"]
    datatype = tensor.get("datatype")
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        raise BadRequest(f"inputs.{name}.datatype",
                         f"expected one of {', '.join(sorted(DATATYPES))}")
    count = _shape(name, tensor.get("shape"))
    params = tensor.get("parameters") or {}
    if not isinstance(params, dict):
        raise BadRequest(f"inputs.{name}.parameters", "expected an object")
    size = params.get("binary_data_size")
    if size is None:
        data = _flatten(tensor.get("data"), name)
        _check_values(name, datatype, data)
        if len(data) != count:
            raise BadRequest(f"inputs.{name}.shape", f"shape {tensor['shape']} does not "
                             f"hold the {len(data)} values sent")
        return name, data, offset
    if not isinstance(size, int) or isinstance(size, bool) or size < 0 or \
            offset + size > len(tail):
        raise BadRequest(f"inputs.{name}.parameters.binary_data_size",
                         f"{size!r} bytes are not in the binary part "
                         f"({len(tail) - offset} bytes left)")
    return name, _binary_values(name, datatype, tail[offset:offset + size], count), \
        offset + size


def _header_and_tail(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    try:
        size = int(header_length)
    except ValueError:
        raise BadRequest("Inference-Header-Content-Length", "expected a number of bytes"
                         ) from None
    if not 0 < size <= len(body):
        raise BadRequest("Inference-Header-Content-Length",
                         f"{size} is not within the {len(body)}-byte body")
    return body[:size], body[size:]


def parse_infer(body: bytes, columns: list[str],
                header_length: str | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``parse_infer_rows`` with the rows as a DataFrame."""
    rows, payload = parse_infer_rows(body, columns, header_length)
    return rows.frame(), payload


def parse_infer_rows(body: bytes, columns: list[str],
                     header_length: str | None = None) -> tuple[Rows, dict[str, Any]]:
    """(rows, request) of an infer request, JSON or binary; every model input column is
    one tensor."""
    if not body:
        raise BadRequest("body", "the request body is empty")
    head, tail = _header_and_tail(body, header_length)
    try:
        payload = json.loads(head, parse_constant=no_json_constants,
                             object_pairs_hook=unique_keys)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadRequest("body", f"not valid JSON: {exc}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list):
        raise BadRequest("inputs", "expected an object with a list of input tensors")
    if "parameters" in payload and not isinstance(payload["parameters"], dict):
        raise BadRequest("parameters", "expected an object of parameters")
    tensors: dict[str, list[Any]] = {}
    offset = 0
    for i, tensor in enumerate(payload["inputs"]):
        name, data, offset = _input(i, tensor, tail, offset)
        if name in tensors:
            raise BadRequest(f"inputs.{name}", "the tensor appears twice")
        tensors[name] = data
    if offset != len(tail):
        raise BadRequest("body", f"{len(tail) - offset} bytes after the tensors that no "
                         "input's binary_data_size accounts for")
    return _frame(tensors, columns), payload


def _frame(tensors: dict[str, list[Any]], columns: list[str]) -> Rows:
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
    return Rows(tensors, count)


def requested(payload: dict[str, Any]) -> tuple[list[tuple[str, bool]], str]:
    """([(output name, binary)], "score" | "decision") that an infer request asks for."""
    params = payload.get("parameters") or {}
    binary_all = bool(params.get("binary_data_output", False))
    output = params.get("output", "score")
    if not isinstance(output, str) or output not in ("score", "decision"):
        raise BadRequest("parameters.output", f"expected score or decision, got {output!r}")
    asked = payload.get("outputs")
    if asked is None:
        name = "decisions" if output == "decision" else "predictions"
        return [(name, binary_all)], str(output)
    if not isinstance(asked, list) or not asked:
        raise BadRequest("outputs", "expected a list of requested outputs")
    out = []
    for i, item in enumerate(asked):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or \
                item["name"] not in OUTPUTS:
            raise BadRequest(f"outputs[{i}].name", f"expected one of {', '.join(OUTPUTS)}")
        item_params = item.get("parameters") or {}
        if not isinstance(item_params, dict):
            raise BadRequest(f"outputs.{item['name']}.parameters", "expected an object")
        out.append((str(item["name"]), bool(item_params.get("binary_data", binary_all))))
    return out, str(output)


def infer_response(model: str, version: str, request_id: str, scores: list[float], *,
                   decisions: list[int] | None,
                   outputs: list[tuple[str, bool]]) -> tuple[bytes, int | None]:
    """(body, JSON header length or None) of an infer response."""
    values: dict[str, list[Any]] = {"predictions": scores}
    if decisions is not None:
        values["decisions"] = decisions
    tensors: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, binary in outputs:
        if name not in values:
            raise BadRequest("outputs", f"{name}: this model has no decision threshold "
                             "(a regression model): ask for predictions")
        data = values[name]
        tensor: dict[str, Any] = {"name": name, "datatype": OUTPUTS[name],
                                  "shape": [len(data)]}
        if binary:
            blob = np.asarray(data, dtype=NUMPY[OUTPUTS[name]]).tobytes()
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            tensor["data"] = data
        tensors.append(tensor)
    head = json.dumps({"model_name": model, "model_version": version, "id": request_id,
                       "outputs": tensors}).encode()
    if not blobs:
        return head, None
    return head + b"".join(blobs), len(head)


def model_metadata(name: str, versions: list[str], columns: list[str],
                   numeric: set[str]) -> dict[str, Any]:
    return {"name": name, "versions": versions, "platform": "raymlops",
            "inputs": [{"name": c, "datatype": "FP64" if c in numeric else "BYTES",
                        "shape": [-1]} for c in columns],
            "outputs": [{"name": n, "datatype": t, "shape": [-1]} for n, t in OUTPUTS.items()]}


def model_config(name: str, columns: list[str], numeric: set[str]) -> dict[str, Any]:
    """A Triton-style model config (``tritonclient`` asks for it)."""
    return {"name": name, "platform": "raymlops", "backend": "raymlops", "max_batch_size": 0,
            "input": [{"name": c, "data_type": "TYPE_FP64" if c in numeric else "TYPE_STRING",
                       "dims": [-1]} for c in columns],
            "output": [{"name": n, "data_type": f"TYPE_{t}", "dims": [-1]}
                       for n, t in OUTPUTS.items()]}


def error(err: BadRequest) -> dict[str, Any]:
    return {"error": f"{err.field}: {err.message}"}
