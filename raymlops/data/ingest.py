"""Ingest: read the configured source with Ray Data, protect PII, snapshot and version it.

The snapshot is the run's own copy of its input (Parquet), so a resumed run or a
retrain reads exactly what the first attempt read. Its digest is independent of row
order and of how the rows are split across files.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import BaseModel

from raymlops._internal.io import (
    count_rows,
    parquet_schema,
    read_parquet_dir,
    write_parquet_atomic,
)
from raymlops.config import DataConfig
from raymlops.data.features import PartialStats
from raymlops.data.privacy import PiiTransform
from raymlops.data.profile import merge_profile
from raymlops.data.sources import Source
from raymlops.errors import ConfigError, DataError, DataValidationError


class IngestResult(BaseModel):
    source: str
    files: list[str]
    snapshot: str
    rows: int
    digest: str
    schema_: dict[str, str]
    numeric: list[str]
    categorical: list[str]
    profile: dict[str, Any]


def _row_hashes(batch: pd.DataFrame) -> tuple[int, int, int]:
    """(rows, sum of row hashes, sum of mixed row hashes), both sums modulo 2**64."""
    frame = batch[sorted(batch.columns)]
    normalized = frame.apply(
        lambda s: s.astype("float64") if pd.api.types.is_numeric_dtype(s) else s.astype(str)
    )
    hashes = pd.util.hash_pandas_object(normalized, index=False).to_numpy(dtype=np.uint64)
    mixed = hashes * np.uint64(0x9E3779B97F4A7C15)
    return len(frame), int(hashes.sum(dtype=np.uint64)), int(mixed.sum(dtype=np.uint64))


class _VersionPartials:
    """Batch function: the digest's row hashes and the profile's statistics in one pass."""

    def __init__(self, numeric: list[str], categorical: list[str]) -> None:
        self.stats = PartialStats(numeric, categorical)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        rows, total, mixed = _row_hashes(batch)
        # the sums are 64-bit unsigned: as text, so that concatenating many blocks'
        # partials never casts them through float64
        return pd.DataFrame({"rows": [rows], "sum": [str(total)], "mixed": [str(mixed)],
                             "stats": [self.stats(batch)["stats"].iloc[0]]})


def version_dataset(path: Path, schema: dict[str, str], numeric: list[str],
                    categorical: list[str]) -> tuple[str, dict[str, Any]]:
    """The content digest and the profile of a Parquet folder, in one pass over it.

    The digest does not depend on row order or on how rows are split across files: each
    row is hashed (numbers normalized to float64), the hashes are summed modulo 2**64
    twice with different mixing, and the column names and row count are hashed in too.
    """
    parts = read_parquet_dir(path).map_batches(
        _VersionPartials(numeric, categorical), batch_format="pandas").to_pandas()
    rows = int(parts["rows"].sum())
    total = int(parts["sum"].map(int).sum()) % 2**64
    mixed = int(parts["mixed"].map(int).sum()) % 2**64
    payload = json.dumps({"columns": sorted(schema), "rows": rows, "sum": total, "mixed": mixed})
    digest = "sha256:" + hashlib.sha256(payload.encode()).hexdigest()
    return digest, merge_profile([str(b) for b in parts["stats"]])


def infer_feature_types(schema: dict[str, str], data: DataConfig) -> tuple[list[str], list[str]]:
    """Numeric and categorical feature columns: declared ones win, the rest are inferred."""
    excluded = {data.target, data.id_column} | {c for c, a in data.pii.items() if a != "generalize"}
    declared = set(data.numeric or []) | set(data.categorical or [])
    for key, cols in (("data.numeric", data.numeric), ("data.categorical", data.categorical),
                      ("data.sensitive", data.sensitive)):
        missing = [c for c in cols or [] if c not in schema]
        if missing:
            raise DataValidationError(f"{key} names column(s) {missing} that the data does not "
                                      f"have (renamed?); columns are {sorted(schema)}")
    numeric = list(data.numeric or [])
    categorical = list(data.categorical or [])
    for column, arrow_type in schema.items():
        if column in excluded or column in declared:
            continue
        if data.numeric is not None and data.categorical is not None:
            continue  # both declared: the declaration is the whole feature list
        is_number = arrow_type in {"double", "float", "int64", "int32", "int16", "int8",
                                   "uint8", "uint16", "uint32", "uint64", "halffloat"}
        if is_number and data.numeric is None:
            numeric.append(column)
        elif not is_number and data.categorical is None:
            categorical.append(column)
    return numeric, categorical


def ingest(data: DataConfig, *, source: Source, run_dir: Path, pii_key: bytes,
           protected: bool = False) -> IngestResult:
    """``protected``: the source is a snapshot whose PII was already dropped, hashed or
    generalized (a retrain); applying it again would hash the hashes."""
    ds = source.read()
    try:
        schema = ds.schema()
    except (pa.ArrowInvalid, OSError, ValueError) as exc:
        raise DataError(f"data.source: cannot read {source.describe()}: {exc}") from None
    except Exception as exc:  # a database driver's own error types
        if not source.is_sql:
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"data.source: cannot read {source.describe()}: {first}") from None
    if schema is None:
        raise DataError(f"data.source: {source.describe()} holds no rows")
    names = list(schema.names)
    for key, column in (("data.target", data.target), ("data.id_column", data.id_column)):
        if column is not None and column not in names:
            raise DataError(f"{key}: column {column!r} is not in the data; columns are {names}")
    for column in data.pii:
        if column not in names and not protected:
            raise ConfigError(f"data.pii.{column}: no such column; columns are {names}")
    if data.pii and not protected:
        ds = ds.map_batches(PiiTransform(data.pii, pii_key), batch_format="pandas")
    snapshot = write_parquet_atomic(ds, run_dir / "data" / "snapshot")
    rows = count_rows(snapshot)
    if rows == 0:
        raise DataError(f"data.source: {source.describe()} holds no rows")
    types = parquet_schema(snapshot)
    numeric, categorical = infer_feature_types(types, data)
    digest, profile = version_dataset(snapshot, types, numeric, categorical)
    return IngestResult(source=source.describe(), files=list(source.files),
                        snapshot=str(snapshot), rows=rows, digest=digest, schema_=types,
                        numeric=numeric, categorical=categorical, profile=profile)


