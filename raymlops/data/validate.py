"""Validate: check every row with Ray Data, quarantine the bad ones with a reason.

Accepted rows come out with normalized types (numbers as float64, categories as
strings). Rows that fail go to a quarantine Parquet folder with a ``_reject_reason``
column. ``rows_in == rows_accepted + rows_quarantined`` is checked and recorded; a
reject rate above ``data.validation.max_reject_fraction`` fails the stage after the
report is written.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from raymlops._internal.io import read_parquet_dir, write_parquet_atomic
from raymlops.config import DataConfig
from raymlops.errors import DataValidationError

REASON = "_reject_reason"
LABEL = "_label"


class ValidationResult(BaseModel):
    accepted: str
    quarantine: str
    rows_in: int
    rows_accepted: int
    rows_quarantined: int
    reasons: dict[str, int]
    report_json: str
    report_html: str


def encode_label(values: pd.Series, data: DataConfig) -> tuple[pd.Series, pd.Series]:
    """Return (numeric label, reason-or-None) for each row."""
    reasons = pd.Series([None] * len(values), index=values.index, dtype=object)
    missing = values.isna()
    reasons[missing] = f"target {data.target!r} is missing"
    if data.task == "regression":
        label = pd.to_numeric(values, errors="coerce")
        bad = label.isna() & ~missing
        reasons[bad] = f"target {data.target!r} is not a number"
        return label.astype("float64"), reasons
    if data.positive_label is not None:
        text = values.astype(str)
        label = (text == str(data.positive_label)).astype("float64")
        return label.where(~missing), reasons
    text = values.astype(str).str.strip().str.lower()
    mapping = {"0": 0.0, "1": 1.0, "0.0": 0.0, "1.0": 1.0, "false": 0.0, "true": 1.0}
    label = text.map(mapping)
    bad = label.isna() & ~missing
    reasons[bad] = (f"target {data.target!r} is not 0/1 or true/false; "
                    "set data.positive_label for other label values")
    return label.astype("float64"), reasons


def _flag(mask: pd.Series, reason: str) -> pd.Series:
    """A reason where ``mask`` holds, None elsewhere."""
    out = pd.Series([None] * len(mask), index=mask.index, dtype=object)
    out[mask.to_numpy(dtype=bool)] = reason
    return out


class RowChecker:
    """Batch function: adds the reject reason and the encoded label, normalizes types."""

    def __init__(self, data: DataConfig, numeric: list[str], categorical: list[str]) -> None:
        self.data = data
        self.numeric = numeric
        self.categorical = categorical

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        out = batch.copy()
        problems: list[pd.Series] = []
        label, label_reason = encode_label(out[self.data.target], self.data)
        out[LABEL] = label
        problems.append(label_reason)
        rules = self.data.validation
        for col in self.numeric:
            raw = out[col]
            number = pd.to_numeric(raw, errors="coerce").astype("float64")
            bad = number.isna() & raw.notna()
            problems.append(_flag(bad, f"column {col!r} is not a number"))
            out[col] = number
            rule = rules.ranges.get(col)
            if rule is not None:
                low = number < rule.min if rule.min is not None else pd.Series(False, out.index)
                high = number > rule.max if rule.max is not None else pd.Series(False, out.index)
                problems.append(_flag(low | high,
                                      f"column {col!r} outside [{rule.min}, {rule.max}]"))
        for col in self.categorical:
            raw = out[col]
            out[col] = raw.map(_category).astype("string")
            allowed = rules.allowed.get(col)
            if allowed is not None:
                bad = out[col].notna() & ~out[col].isin(allowed)
                problems.append(_flag(bad, f"column {col!r} has a value outside the allowed set"))
        reasons = pd.Series([None] * len(out), index=out.index, dtype=object)
        for series in problems:
            has = series.notna()
            reasons[has] = np.where(reasons[has].isna(), series[has],
                                    reasons[has].astype(str) + "; " + series[has].astype(str))
        out[REASON] = reasons
        return out


def _category(value: object) -> str | None:
    """Categories as stripped strings; empty strings (how CSV writes a hole) are missing."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    text = str(value).strip()
    return text or None


def _accepted(batch: pd.DataFrame) -> pd.DataFrame:
    return batch[batch[REASON].isna()].drop(columns=[REASON])


def _rejected(batch: pd.DataFrame) -> pd.DataFrame:
    return batch[batch[REASON].notna()]


def _reason_counts(batch: pd.DataFrame) -> pd.DataFrame:
    counts = Counter()  # type: Counter[str]
    for reason in batch[REASON].dropna():
        for part in str(reason).split("; "):
            counts[part] += 1
    return pd.DataFrame({"counts": [json.dumps(counts)], "rows": [len(batch)],
                         "bad": [int(batch[REASON].notna().sum())]})


def validate(data: DataConfig, *, snapshot: Path, numeric: list[str], categorical: list[str],
             run_dir: Path) -> ValidationResult:
    checked = read_parquet_dir(snapshot).map_batches(
        RowChecker(data, numeric, categorical), batch_format="pandas"
    ).materialize()
    partials = checked.map_batches(_reason_counts, batch_format="pandas").to_pandas()
    rows_in = int(partials["rows"].sum())
    reasons: Counter[str] = Counter()
    for blob in partials["counts"]:
        reasons.update(json.loads(blob))
    out_dir = run_dir / "data"
    accepted_dir = write_parquet_atomic(checked.map_batches(_accepted, batch_format="pandas"),
                                        out_dir / "accepted")
    quarantine_dir = write_parquet_atomic(checked.map_batches(_rejected, batch_format="pandas"),
                                          out_dir / "quarantine")
    rows_accepted = _count(accepted_dir)
    rows_quarantined = _count(quarantine_dir)
    balanced = rows_in == rows_accepted + rows_quarantined
    fraction = rows_quarantined / rows_in if rows_in else 1.0
    bound = data.validation.max_reject_fraction
    verdict = "pass"
    problems = []
    if not balanced:
        problems.append(f"row accounting is off: {rows_in} in, {rows_accepted} accepted, "
                        f"{rows_quarantined} quarantined")
    if fraction > bound:
        problems.append(f"{fraction:.1%} of rows were quarantined, above "
                        f"data.validation.max_reject_fraction={bound:.1%}")
    if rows_accepted < data.validation.min_rows:
        problems.append(f"only {rows_accepted} rows passed, below "
                        f"data.validation.min_rows={data.validation.min_rows}")
    if problems:
        verdict = "fail"
    report = {
        "verdict": verdict, "problems": problems, "rows_in": rows_in,
        "rows_accepted": rows_accepted, "rows_quarantined": rows_quarantined,
        "reject_fraction": fraction, "max_reject_fraction": bound,
        "reasons": dict(reasons.most_common()), "quarantine": str(quarantine_dir),
    }
    report_json = out_dir / "validation.json"
    report_json.write_text(json.dumps(report, indent=2))
    report_html = out_dir / "validation.html"
    report_html.write_text(_html(report))
    if problems:
        top = ", ".join(f"{r} ({n})" for r, n in reasons.most_common(3))
        raise DataValidationError(
            f"validation failed: {'; '.join(problems)}. Top reasons: {top or 'none'}. "
            f"Report: {report_json}"
        )
    return ValidationResult(
        accepted=str(accepted_dir), quarantine=str(quarantine_dir), rows_in=rows_in,
        rows_accepted=rows_accepted, rows_quarantined=rows_quarantined,
        reasons=dict(reasons), report_json=str(report_json), report_html=str(report_html),
    )


def _count(path: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(p).metadata.num_rows for p in sorted(path.glob("*.parquet")))


def _html(report: dict[str, Any]) -> str:
    rows = "".join(f"<tr><td>{html.escape(r)}</td><td>{n}</td></tr>"
                   for r, n in report["reasons"].items())
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Validation report</title></head>"
        f"<body><h1>Validation: {report['verdict']}</h1>"
        f"<p>{report['rows_in']} rows in, {report['rows_accepted']} accepted, "
        f"{report['rows_quarantined']} quarantined ({report['reject_fraction']:.2%}; "
        f"bound {report['max_reject_fraction']:.2%}).</p>"
        + "".join(f"<p><b>{html.escape(p)}</b></p>" for p in report["problems"])
        + f"<table border=1><tr><th>reason</th><th>rows</th></tr>{rows}</table></body></html>"
    )
