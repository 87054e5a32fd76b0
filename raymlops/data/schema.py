"""The expected schema: column names and type families, label values, category sets.

Inferred once from a trusted dataset (``raymlops schema``) and saved as JSON; the
validate stage then compares every new dataset against it before judging any row, so
a renamed column, a changed type or an unseen label value blocks the run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from pydantic import BaseModel

from raymlops.config import DataConfig
from raymlops.errors import ConfigError

#: Categories with at most this many distinct values get an allowed set in the schema.
MAX_INFERRED_CATEGORIES = 50

_NUMBER_TYPES = {"double", "float", "halffloat", "int8", "int16", "int32", "int64", "uint8",
                 "uint16", "uint32", "uint64", "float64", "float32", "int", "number"}


def type_family(arrow_or_pandas_type: str) -> str:
    """Group concrete types into the families a schema promises: number, bool, string."""
    name = str(arrow_or_pandas_type).lower()
    if name in _NUMBER_TYPES or name.startswith(("int", "uint", "float", "decimal")):
        return "number"
    if name in ("bool", "boolean"):
        return "bool"
    if name == "null":
        return "null"
    return "string"


class ExpectedSchema(BaseModel):
    columns: dict[str, str]
    labels: list[str] | None = None
    categories: dict[str, list[str]] = {}

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json(indent=2))
        return path

    @classmethod
    def load(cls, path: Path) -> ExpectedSchema:
        if not path.is_file():
            raise ConfigError(f"data.validation.schema: {path} does not exist; write one with "
                              "`raymlops schema --data TRUSTED --config CONFIG --out PATH`")
        return cls.model_validate(json.loads(path.read_text()))


def infer_schema(frame: pd.DataFrame, data: DataConfig) -> ExpectedSchema:
    """The schema of a trusted table (already PII-protected or raw: names and types only)."""
    columns = {c: type_family(str(t)) for c, t in frame.dtypes.items()}
    from raymlops.data.rules import canonical_labels
    from raymlops.features.normalize import canonical_categories

    labels = None
    if data.task == "classification" and data.target in frame.columns:
        # canonical texts: a label column pandas read as floats (one hole) gives '0', '1'
        labels = canonical_labels(frame[data.target].dropna().unique())
    skip = {data.target, data.id_column, *data.pii}
    categories = {}
    for column, family in columns.items():
        if family != "string" or column in skip:
            continue
        texts, _ = canonical_categories(frame[column])
        distinct = sorted({v for v in texts if v is not None})
        if len(distinct) <= MAX_INFERRED_CATEGORIES:
            categories[column] = distinct
    return ExpectedSchema(columns=columns, labels=labels, categories=categories)


def compare(expected: ExpectedSchema, actual: dict[str, str],
            ignore: set[str] | None = None) -> list[str]:
    """Problems that make the dataset unfit to judge row by row.

    ``ignore`` names columns whose presence and type PII handling changes (dropped,
    hashed or generalized at ingest).
    """
    skip = ignore or set()
    expected = expected.model_copy(update={
        "columns": {c: f for c, f in expected.columns.items() if c not in skip}})
    actual = {c: t for c, t in actual.items() if c not in skip}
    problems = []
    missing = [c for c in expected.columns if c not in actual]
    extra = [c for c in actual if c not in expected.columns]
    if missing:
        hint = f"; unexpected columns {extra} (renamed?)" if extra else ""
        problems.append(f"schema: expected column(s) {missing} are missing{hint}")
    elif extra:
        problems.append(f"schema: unexpected column(s) {extra}; update the expected schema "
                        "if they are intended")
    for column, family in expected.columns.items():
        if column not in actual:
            continue
        found = type_family(actual[column])
        if found not in (family, "null") and not (family == "number" and found == "bool"):
            problems.append(f"schema: column {column!r} is {found}, expected {family}")
    return problems
