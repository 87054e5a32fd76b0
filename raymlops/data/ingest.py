"""Ingest: read the configured source with Ray Data, protect PII, snapshot and version it.

The snapshot is the run's own copy of its input (Parquet), so a resumed run or a
retrain reads exactly what the first attempt read. Its digest (``raymlops.data.digest``)
is a full-strength multiset hash of the rows, typed, independent of row order and of
how the rows are split across files. Ingest also decides which columns are features
(``raymlops.data.columns``) and records how raw rows are normalized (``RowSpec``), so
that every later reader of a row, serving included, treats it the same way.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
from pydantic import BaseModel

from raymlops._internal.io import (
    arrow_schema,
    count_rows,
    parquet_schema,
    read_parquet,
    write_parquet_atomic,
)
from raymlops.config import DataConfig
from raymlops.data.columns import check_columns, drop_identifiers, infer_feature_types
from raymlops.data.digest import (
    DigestPartial,
    finish_digest,
    partial_digest,
    partial_from_text,
    partial_to_text,
    type_families,
)
from raymlops.data.labels import canonical_counts, infer_positive
from raymlops.data.profile import profile_of
from raymlops.data.sources import Source
from raymlops.errors import DataError, RetryableError
from raymlops.features.normalize import RowSpec
from raymlops.features.pii import Protector
from raymlops.features.stats import PartialStats, merge_stats

log = logging.getLogger(__name__)

#: Values of one category kept per batch in the profile pass (id-like columns are huge).
_PROFILE_CAP = 1000


class IngestResult(BaseModel):
    source: str
    files: list[str]
    #: what was read, fingerprinted when it was read (the incremental watermark's record)
    fingerprint: Any
    read_at: str
    snapshot: str
    rows: int
    digest: str
    schema_: dict[str, str]
    numeric: list[str]
    categorical: list[str]
    #: columns that are not features, each with the reason
    excluded: dict[str, str]
    #: the row normalization (``RowSpec.to_dict``)
    spec: dict[str, Any]
    profile: dict[str, Any]
    #: a two-valued label's positive class, when the config names none, and why
    positive_label: str | None = None
    positive_reason: str = ""


class _VersionPartials:
    """Batch function: the digest's partial and the profile's statistics in one pass."""

    def __init__(self, numeric: list[str], categorical: list[str]) -> None:
        self.stats = PartialStats(numeric, categorical, cap=_PROFILE_CAP)

    def __call__(self, batch: pa.Table) -> pd.DataFrame:
        # The digest reads the Arrow batch (exact types; pandas would turn an integer
        # column with holes into floats); the statistics read its pandas view.
        partial = partial_digest(batch)
        stats = self.stats(batch.to_pandas())["stats"].iloc[0]
        return pd.DataFrame({"digest": [partial_to_text(partial)], "stats": [stats]})


def version_dataset(path: Path, numeric: list[str],
                    categorical: list[str]) -> tuple[str, Any]:
    """The content digest and the merged statistics of a Parquet folder, in one pass."""
    parts = read_parquet(str(path)).map_batches(
        _VersionPartials(numeric, categorical), batch_format="pyarrow").to_pandas()
    total = DigestPartial(0, 0)
    for text in parts["digest"]:
        total = total + partial_from_text(text)
    schema = arrow_schema(path)
    families = type_families(schema) if schema is not None else {}
    return finish_digest(total, families), merge_stats(parts["stats"], numeric, categorical)


def ingest(data: DataConfig, *, source: Source, run_dir: Path, pii_key: bytes,
           key_ref: dict[str, str] | None = None, protected: bool = False) -> IngestResult:
    """``protected``: the source is a snapshot whose PII was already dropped, hashed or
    generalized (a retrain); applying it again would hash the hashes."""
    before = source.fingerprint()
    read_at = datetime.now(UTC).isoformat()
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
    check_columns(data, list(schema.names), protected=protected)
    if data.pii and not protected:
        ds = ds.map_batches(Protector(data.pii, pii_key), batch_format="pandas")
    snapshot = write_parquet_atomic(ds, run_dir / "data" / "snapshot")
    if source.fingerprint() != before:
        raise RetryableError(f"data.source: {source.describe()} changed while it was read; "
                             "run again once the writer has finished")
    rows = count_rows(snapshot)
    if rows == 0:
        raise DataError(f"data.source: {source.describe()} holds no rows")
    types = parquet_schema(snapshot)
    numeric, categorical, excluded, timestamps = infer_feature_types(types, data)
    labelled = data.task == "classification" and data.target in types
    digest, merged = version_dataset(snapshot, numeric,
                                     [*categorical, data.target] if labelled else categorical)
    label_counts = dict(merged.counts.pop(data.target, {}))
    positive, positive_reason = None, ""
    if labelled and data.positive_label is None:
        positive, positive_reason = infer_positive(_expected_labels(data, label_counts))
        log.info("ingest: positive class of %r: %s", data.target, positive_reason)
    categorical, ids = drop_identifiers(categorical, merged, data)
    excluded.update(ids)
    for column, reason in excluded.items():
        log.info("ingest: column %r is not a feature: %s", column, reason)
    profile = profile_of(merged)
    for column in excluded:
        profile[column] = {"kind": "excluded", "reason": excluded[column]}
    if labelled:
        profile[data.target] = {"kind": "label", "counts": dict(canonical_counts(label_counts)),
                                "positive": positive if positive is not None else
                                data.positive_label, "reason": positive_reason}
    inputs = {*numeric, *categorical}
    pii: dict[str, str] = {c: str(a) for c, a in data.pii.items() if c in inputs}
    spec = RowSpec(numeric=numeric, categorical=categorical, pii=pii,
                   pii_key=key_ref if "hash" in pii.values() else None,
                   datetime=[c for c in numeric if c in timestamps])
    return IngestResult(source=source.describe(), files=list(source.files), fingerprint=before,
                        read_at=read_at, snapshot=str(snapshot), rows=rows, digest=digest,
                        schema_=types, numeric=numeric, categorical=categorical,
                        excluded=excluded, spec=spec.to_dict(), profile=profile,
                        positive_label=positive, positive_reason=positive_reason)


def _expected_labels(data: DataConfig, counts: dict[str, int]) -> dict[str, int]:
    """The label values the positive class is chosen among: with an expected schema, its
    label set (a batch with a stray third value still has two classes; the stray rows are
    quarantined by validation), else every value this batch holds."""
    from pathlib import Path

    from raymlops.data.schema import ExpectedSchema

    if not data.validation.schema_:
        return counts
    expected = ExpectedSchema.load(Path(data.validation.schema_))
    if not expected.labels:
        return counts
    from raymlops.data.labels import canonical_counts

    present = canonical_counts(counts)
    return {label: present.get(label, 0) for label in expected.labels}
