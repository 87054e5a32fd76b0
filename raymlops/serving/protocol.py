"""The MLflow scoring protocol: request bodies to a DataFrame, with errors that name a field.

Accepted bodies (as ``mlflow models serve``): JSON with exactly one of
``dataframe_split``, ``dataframe_records``, ``instances`` or ``inputs`` (``params`` is
allowed beside it), or CSV with ``Content-Type: text/csv``.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pandas as pd

JSON_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
MAX_ROWS = 10_000


class BadRequest(Exception):
    """A client error: HTTP 400 with the offending field."""

    def __init__(self, field: str, message: str, status: int = 400) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.status = status

    def to_json(self) -> dict[str, Any]:
        return {"error_code": "BAD_REQUEST", "field": self.field, "message": self.message}


def parse_body(body: bytes, content_type: str | None, columns: list[str]) -> pd.DataFrame:
    """Parse a scoring request. ``columns`` is the model's input order, for positional rows."""
    kind = (content_type or "application/json").split(";")[0].strip().lower()
    if not body:
        raise BadRequest("body", "the request body is empty")
    if kind == "text/csv":
        try:
            frame = pd.read_csv(io.BytesIO(body))
        except (ValueError, pd.errors.ParserError) as exc:
            raise BadRequest("body", f"not valid CSV: {exc}") from None
        return _limit(frame)
    if kind not in ("application/json", "application/x-json", ""):
        raise BadRequest("content-type", f"unsupported content type {kind!r}; "
                         "use application/json or text/csv", status=415)
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("body", f"not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise BadRequest("body", f"expected a JSON object with one of {', '.join(JSON_KEYS)}")
    present = [k for k in JSON_KEYS if k in payload]
    unknown = sorted(set(payload) - {*JSON_KEYS, "params"})
    if unknown:
        raise BadRequest(unknown[0], f"unknown field; expected one of {', '.join(JSON_KEYS)}")
    if len(present) != 1:
        raise BadRequest("body", f"expected exactly one of {', '.join(JSON_KEYS)}, "
                         f"got {present or 'none'}")
    key = present[0]
    value = payload[key]
    if key == "dataframe_split":
        return _limit(_from_split(value))
    if key == "dataframe_records":
        return _limit(_from_records(value, key))
    return _limit(_from_tensor_like(value, key, columns))


def _limit(frame: pd.DataFrame) -> pd.DataFrame:
    if len(frame) == 0:
        raise BadRequest("body", "the request holds no rows")
    if len(frame) > MAX_ROWS:
        raise BadRequest("body", f"{len(frame)} rows exceed the limit of {MAX_ROWS} per request",
                         status=413)
    return frame


def _from_split(value: Any) -> pd.DataFrame:
    if not isinstance(value, dict):
        raise BadRequest("dataframe_split", "expected an object with 'columns' and 'data'")
    columns, data = value.get("columns"), value.get("data")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise BadRequest("dataframe_split.columns", "expected a list of column names")
    if not isinstance(data, list):
        raise BadRequest("dataframe_split.data", "expected a list of rows")
    for i, row in enumerate(data):
        if not isinstance(row, list) or len(row) != len(columns):
            raise BadRequest(f"dataframe_split.data[{i}]",
                             f"expected a list of {len(columns)} values, one per column")
    return pd.DataFrame(data, columns=columns)


def _from_records(value: Any, key: str) -> pd.DataFrame:
    if not isinstance(value, list):
        raise BadRequest(key, "expected a list of objects, one per row")
    for i, row in enumerate(value):
        if not isinstance(row, dict):
            raise BadRequest(f"{key}[{i}]", "expected an object mapping column to value")
    return pd.DataFrame.from_records(value)


def _from_tensor_like(value: Any, key: str, columns: list[str]) -> pd.DataFrame:
    if isinstance(value, dict):
        lengths = set()
        for column, values in value.items():
            if not isinstance(values, list):
                raise BadRequest(f"{key}.{column}", "expected a list of values")
            lengths.add(len(values))
        if len(lengths) > 1:
            raise BadRequest(key, "all columns must have the same number of values")
        return pd.DataFrame(value)
    if not isinstance(value, list):
        raise BadRequest(key, "expected a list of rows or an object of columns")
    if all(isinstance(r, dict) for r in value):
        return _from_records(value, key)
    for i, row in enumerate(value):
        if not isinstance(row, list) or len(row) != len(columns):
            raise BadRequest(f"{key}[{i}]", f"expected a list of {len(columns)} values in the "
                             f"model's input order: {', '.join(columns)}")
    return pd.DataFrame(value, columns=columns)


def coerce_inputs(frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> pd.DataFrame:
    """Check the model's input columns are present and typed; name the first bad field."""
    missing = [c for c in [*numeric, *categorical] if c not in frame.columns]
    if missing:
        raise BadRequest(missing[0], f"required input column is missing "
                         f"({len(missing)} missing: {', '.join(missing[:10])})")
    out = frame[[*numeric, *categorical]].copy()
    for column in numeric:
        raw = out[column]
        if raw.dtype.kind in "biuf":
            out[column] = raw.astype("float64")
            continue
        number = pd.to_numeric(raw, errors="coerce")
        bad = number.isna() & raw.notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise BadRequest(column, f"expected a number, got {raw.iloc[row]!r} (row {row})")
        out[column] = number.astype("float64")
    for column in categorical:
        raw = out[column]
        bad = raw.map(lambda v: isinstance(v, list | dict))
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise BadRequest(column, f"expected a scalar category, got {raw.iloc[row]!r}")
        out[column] = raw.map(lambda v: None if v is None or (isinstance(v, float) and
                                                              np.isnan(v)) else str(v))
    return out
