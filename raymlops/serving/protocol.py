"""The MLflow scoring protocol: request bodies to a DataFrame, with errors that name a field.

Accepted bodies (as ``mlflow models serve``): JSON with exactly one of
``dataframe_split``, ``dataframe_records``, ``instances`` or ``inputs`` (``params`` is
allowed beside it), or CSV with ``Content-Type: text/csv``. Values are left as the
client sent them: the model's own row normalization (``raymlops.features``) turns them
into inputs and names the field of any value it cannot use. This module rejects what
is malformed before that: bad JSON, ``NaN``/``Infinity`` tokens, duplicate keys or
column names, a record that lacks an input column, ragged rows, oversized requests.
"""

from __future__ import annotations

import csv
import difflib
import io
import itertools
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pandas as pd

from raymlops.features.normalize import Normalized

JSON_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
MAX_ROWS = 10_000
#: MLflow's own error codes (its ErrorCode names); the HTTP status says the rest
_ERROR_CODES = {403: "PERMISSION_DENIED", 404: "ENDPOINT_NOT_FOUND", 413: "REQUEST_LIMIT_EXCEEDED",
                503: "TEMPORARILY_UNAVAILABLE"}


class BadRequest(Exception):
    """A client error: HTTP 4xx with the offending field (and row, when one row is at fault)."""

    def __init__(self, field: str, message: str, status: int = 400,
                 row: int | None = None) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field or "body"  # an empty key names no field: the body is at fault
        self.message = message
        self.status = status
        self.row = row

    def __reduce__(self) -> tuple[Any, ...]:
        # In the separate shape a version's deployment returns this to the ingress
        # through a handle: pickled with all its fields, or unpickling fails (a 500).
        return (type(self), (self.field, self.message, self.status, self.row))

    def to_json(self) -> dict[str, Any]:
        code = _ERROR_CODES.get(self.status, "BAD_REQUEST")
        out: dict[str, Any] = {"error_code": code, "field": self.field, "message": self.message}
        if self.row is not None:
            out["row"] = self.row
        return out


def no_json_constants(token: str) -> float:
    raise BadRequest("body", f"{token} is not valid JSON; send null for a missing value")


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise BadRequest(key, f"the key {key!r} appears twice in one object")
        seen[key] = value
    return seen


def _hint(name: str, names: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclass
class Rows:
    """A request's rows by column, values as sent. A DataFrame is made once per batch
    (``concat``), not once per request: on the one-row path that is most of the cost."""

    columns: dict[str, list[Any]]
    count: int

    def __len__(self) -> int:
        return self.count

    @classmethod
    def of(cls, frame: pd.DataFrame) -> Rows:
        return cls({str(c): frame[c].tolist() for c in frame.columns}, len(frame))

    def frame(self) -> pd.DataFrame:
        return Rows.concat([self], list(self.columns))

    @staticmethod
    def concat(parts: list[Rows], columns: list[str]) -> pd.DataFrame:
        """The ``columns`` of every part, one after another, as object columns."""
        if not any(p.count for p in parts):
            return pd.DataFrame(columns=columns)
        return pd.DataFrame({c: pd.Series(list(itertools.chain.from_iterable(
            p.columns[c] for p in parts)), dtype=object) for c in columns})


#: what ``params.output`` may ask for, as the model's pyfunc takes it
OUTPUTS = ("score", "decision")


def _output_of(params: dict[str, Any]) -> str:
    """``params.output`` (MLflow's scoring protocol carries pyfunc params there):
    ``score`` (default) or ``decision``, the 0/1 decision at the threshold the model
    chose on its validation split."""
    unknown = sorted(set(params) - {"output"})
    if unknown:
        raise BadRequest(f"params.{unknown[0]}", "unknown parameter; the model takes 'output'")
    output = params.get("output", "score")
    if not isinstance(output, str) or output not in OUTPUTS:
        raise BadRequest("params.output", f"expected one of {', '.join(OUTPUTS)}, got "
                         f"{output!r}")
    return str(output)


def parse_body(body: bytes, content_type: str | None, columns: list[str]) -> pd.DataFrame:
    """The rows of a scoring request (``parse_request`` without its params)."""
    return parse_request(body, content_type, columns)[0]


def parse_request(body: bytes, content_type: str | None,
                  columns: list[str]) -> tuple[pd.DataFrame, str]:
    """``parse_rows`` with the rows as a DataFrame."""
    rows, output = parse_rows(body, content_type, columns)
    return rows.frame(), output


def parse_rows(body: bytes, content_type: str | None,
               columns: list[str]) -> tuple[Rows, str]:
    """Parse a scoring request into (rows, output). ``columns`` is the model's input
    order: positional rows follow it, and every record must have each of them."""
    kind = (content_type or "application/json").split(";")[0].strip().lower()
    if not body:
        raise BadRequest("body", "the request body is empty")
    if kind == "text/csv":
        return _limit(Rows.of(_from_csv(body))), "score"
    if kind not in ("application/json", "application/x-json", ""):
        raise BadRequest("content-type", f"unsupported content type {kind!r}; "
                         "use application/json or text/csv", status=415)
    try:
        payload = json.loads(body, parse_constant=no_json_constants, object_pairs_hook=unique_keys)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
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
    if "params" in payload and not isinstance(payload["params"], dict):
        raise BadRequest("params", "expected an object of parameters")
    key = present[0]
    value = payload[key]
    if key == "dataframe_split":
        rows = _from_split(value)
    elif key == "dataframe_records":
        rows = _from_records(value, key, columns)
    else:
        rows = _from_tensor_like(value, key, columns)
    return _limit(rows), _output_of(payload.get("params") or {})


def _from_csv(body: bytes) -> pd.DataFrame:
    try:
        text = body.decode("utf-8")
        header = next(csv.reader(io.StringIO(text)), [])
    except (UnicodeDecodeError, csv.Error) as exc:
        raise BadRequest("body", f"not valid CSV: {exc}") from None
    duplicated = sorted(c for c, n in Counter(header).items() if n > 1)
    if duplicated:
        raise BadRequest(duplicated[0], "the column appears twice in the CSV header")
    try:
        # Every value as its text, blanks as blanks: the model's normalization reads them
        # as Arrow's CSV reader read the training table.
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as exc:
        raise BadRequest("body", f"not valid CSV: {str(exc).splitlines()[0]}") from None


def _limit(rows: Rows) -> Rows:
    if rows.count == 0:
        raise BadRequest("body", "the request holds no rows")
    if rows.count > MAX_ROWS:
        raise BadRequest("body", f"{rows.count} rows exceed the limit of {MAX_ROWS} per request",
                         status=413)
    return rows


def _from_split(value: Any) -> Rows:
    if not isinstance(value, dict):
        raise BadRequest("dataframe_split", "expected an object with 'columns' and 'data'")
    columns, data = value.get("columns"), value.get("data")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise BadRequest("dataframe_split.columns", "expected a list of column names")
    duplicated = sorted(c for c, n in Counter(columns).items() if n > 1)
    if duplicated:
        raise BadRequest("dataframe_split.columns", f"column {duplicated[0]!r} appears twice")
    if not isinstance(data, list):
        raise BadRequest("dataframe_split.data", "expected a list of rows")
    for i, row in enumerate(data):
        if not isinstance(row, list) or len(row) != len(columns):
            raise BadRequest(f"dataframe_split.data[{i}]",
                             f"expected a list of {len(columns)} values, one per column", row=i)
    return _frame(data, columns)


def _frame(rows: list[list[Any]], columns: list[str]) -> Rows:
    """Rows of JSON values by column, as sent (no type inference, no casts)."""
    return Rows({c: [r[j] for r in rows] for j, c in enumerate(columns)}, len(rows))


def _from_records(value: Any, key: str, columns: list[str]) -> Rows:
    if not isinstance(value, list):
        raise BadRequest(key, "expected a list of objects, one per row")
    for i, row in enumerate(value):
        if not isinstance(row, dict):
            raise BadRequest(f"{key}[{i}]", "expected an object mapping column to value", row=i)
        for column in columns:
            if column not in row:
                raise BadRequest(column, f"{key}[{i}] has no {column!r}"
                                 f"{_hint(column, [k for k in row if k not in columns])}; every "
                                 "record needs every input column (null for a missing value)",
                                 row=i)
    names = list(dict.fromkeys([*columns, *(k for row in value for k in row)]))
    return Rows({c: [row.get(c) for row in value] for c in names}, len(value))


def _from_tensor_like(value: Any, key: str, columns: list[str]) -> Rows:
    if isinstance(value, dict):
        lengths = set()
        for column, values in value.items():
            if not isinstance(values, list):
                raise BadRequest(f"{key}.{column}", "expected a list of values")
            lengths.add(len(values))
        if len(lengths) > 1:
            raise BadRequest(key, "all columns must have the same number of values")
        count = lengths.pop() if lengths else 0
        return Rows({c: list(v) for c, v in value.items()}, count)
    if not isinstance(value, list):
        raise BadRequest(key, "expected a list of rows or an object of columns")
    if value and all(isinstance(r, dict) for r in value):
        return _from_records(value, key, columns)
    for i, row in enumerate(value):
        if not isinstance(row, list) or len(row) != len(columns):
            raise BadRequest(f"{key}[{i}]", f"expected a list of {len(columns)} values in the "
                             f"model's input order: {', '.join(columns)}", row=i)
    return _frame(value, columns)


def require_columns(frame: pd.DataFrame | Rows, columns: list[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        extra = [c for c in frame.columns if c not in columns]
        raise BadRequest(missing[0], f"required input column is missing{_hint(missing[0], extra)}"
                         f" ({len(missing)} missing: {', '.join(missing[:10])})")


def raise_problems(normalized: Normalized, frame: pd.DataFrame) -> None:
    """The first value the model's normalization could not use, as a 400 naming it."""
    if not normalized.problems:
        return
    problem = min(normalized.problems, key=lambda p: (p.first_row(), p.column))
    row = problem.first_row()
    raise BadRequest(problem.column, f"{problem.message(frame)} (row {row})", row=row)
