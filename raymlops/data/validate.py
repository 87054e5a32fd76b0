"""Validate: judge the dataset, then every row with Ray Data; quarantine the bad rows.

Dataset rules come first: the expected schema (names, types), which makes rows
impossible to judge when it fails. Then a pass over all rows finds ids that occur more
than once, and a second pass applies the row rules (``raymlops.data.rules``). Accepted
rows come out with normalized types; rejected rows go to a quarantine Parquet folder
with a ``_reject_reason`` column. ``rows_in == rows_accepted + rows_quarantined`` is
checked and recorded. The stage fails, after writing its report, when the reject rate
passes ``data.validation.max_reject_fraction``, when the row count is out of bounds, or
when the minority class is rarer than ``min_class_fraction``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel

from raymlops._internal import html as report_html
from raymlops._internal.io import count_rows, read_parquet_dir, write_parquet_atomic
from raymlops.config import DataConfig
from raymlops.data.rules import RowChecker
from raymlops.data.schema import ExpectedSchema, compare
from raymlops.errors import DataValidationError
from raymlops.features.normalize import RowSpec
from raymlops.names import LABEL, REASON


class ValidationResult(BaseModel):
    accepted: str
    quarantine: str
    rows_in: int
    rows_accepted: int
    rows_quarantined: int
    reasons: dict[str, int]
    class_balance: dict[str, float]
    report_json: str
    report_html: str


def _accepted(batch: pd.DataFrame) -> pd.DataFrame:
    return batch[batch[REASON].isna()].drop(columns=[REASON])


def _rejected(batch: pd.DataFrame) -> pd.DataFrame:
    return batch[batch[REASON].notna()]


def _partials(batch: pd.DataFrame) -> pd.DataFrame:
    counts: Counter[str] = Counter()
    for reason in batch[REASON].dropna():
        for part in str(reason).split("; "):
            counts[part] += 1
    good = batch[REASON].isna()
    labels = batch.loc[good, LABEL].value_counts()
    return pd.DataFrame({"counts": [json.dumps(counts)], "rows": [len(batch)],
                         "labels": [json.dumps({str(k): int(v) for k, v in labels.items()})]})


#: Rows per hash partition of the duplicate-id groupby. Ray Data's default is 200
#: partitions whatever the size: on 2 cores, 200 shuffle tasks made a 12,000-row
#: validation take 20 s instead of 2.
_ROWS_PER_PARTITION = 1_000_000


def duplicate_ids(ds: Any, id_column: str, rows: int) -> list[str]:
    """Ids that occur more than once anywhere in the dataset (one Ray Data groupby)."""

    def repeated(batch: pd.DataFrame) -> pd.DataFrame:
        count = next(c for c in batch.columns if c != id_column)
        return batch.loc[batch[count] > 1, [id_column]]

    partitions = max(1, min(200, rows // _ROWS_PER_PARTITION + 1))
    counts = ds.select_columns([id_column]).groupby(id_column,
                                                   num_partitions=partitions).count()
    frame = counts.map_batches(repeated, batch_format="pandas").to_pandas()
    return frame[id_column].astype(str).tolist() if len(frame) else []


def validate(data: DataConfig, *, snapshot: Path, schema: dict[str, str], spec: RowSpec,
             excluded: dict[str, str], run_dir: Path,
             positive: str | None = None) -> ValidationResult:
    """``positive``: the positive class ingest inferred for a two-valued label."""
    rules = data.validation
    out_dir = run_dir / "data"
    out_dir.mkdir(parents=True, exist_ok=True)
    expected = ExpectedSchema.load(Path(rules.schema_)) if rules.schema_ else None
    if expected is not None:
        problems = compare(expected, schema, ignore=set(data.pii))
        if problems:
            failed: dict[str, Any] = {"verdict": "fail", "stage": "schema", "problems": problems,
                      "expected": expected.model_dump(), "actual": schema,
                      "excluded_columns": excluded}
            json_path, _ = _write_reports(failed, out_dir)
            raise DataValidationError(f"validation failed before any row was judged: "
                                      f"{'; '.join(problems)}. Report: {json_path}")
    ds = read_parquet_dir(snapshot)
    dups: list[str] = []
    if rules.unique_id and data.id_column and data.id_column in schema:
        dups = duplicate_ids(ds, data.id_column, count_rows(snapshot))
    allowed: dict[str, list[object]] = {
        **{c: list(v) for c, v in (expected.categories if expected else {}).items()},
        **{c: list(v) for c, v in rules.allowed.items()}}
    checker = RowChecker(data, spec, allowed=allowed,
                         labels=expected.labels if expected else None, duplicate_ids=dups,
                         positive=positive)
    checked = ds.map_batches(checker, batch_format="pandas").materialize()
    partials = checked.map_batches(_partials, batch_format="pandas").to_pandas()
    rows_in = int(partials["rows"].sum())
    reasons: Counter[str] = Counter()
    labels: Counter[str] = Counter()
    for blob, label_blob in zip(partials["counts"], partials["labels"], strict=True):
        reasons.update(json.loads(blob))
        labels.update(json.loads(label_blob))
    accepted_dir = write_parquet_atomic(checked.map_batches(_accepted, batch_format="pandas"),
                                        out_dir / "accepted")
    quarantine_dir = write_parquet_atomic(checked.map_batches(_rejected, batch_format="pandas"),
                                          out_dir / "quarantine")
    rows_accepted, rows_quarantined = count_rows(accepted_dir), count_rows(quarantine_dir)
    total = sum(labels.values())
    balance = {k: v / total for k, v in sorted(labels.items())} if total else {}
    problems = _dataset_problems(data, rows_in, rows_accepted, rows_quarantined, balance)
    report: dict[str, Any] = {
        "verdict": "fail" if problems else "pass", "problems": problems, "rows_in": rows_in,
        "rows_accepted": rows_accepted, "rows_quarantined": rows_quarantined,
        "reject_fraction": rows_quarantined / rows_in if rows_in else 1.0,
        "max_reject_fraction": rules.max_reject_fraction, "duplicate_ids": len(dups),
        "class_balance": balance, "reasons": dict(reasons.most_common()),
        "quarantine": str(quarantine_dir),
        "schema": "checked against " + str(rules.schema_) if expected else "not configured",
        "features": {"numeric": spec.numeric, "categorical": spec.categorical},
        "excluded_columns": excluded,
        "positive_label": _positive_label_note(data) or (
            f"{positive!r} (inferred: see the dataset_ingested lineage event)"
            if positive else None),
    }
    json_path, html_path = _write_reports(report, out_dir)
    if problems:
        top = ", ".join(f"{r} ({n})" for r, n in reasons.most_common(3))
        raise DataValidationError(f"validation failed: {'; '.join(problems)}. "
                                  f"Top reasons: {top or 'none'}. Report: {json_path}")
    return ValidationResult(
        accepted=str(accepted_dir), quarantine=str(quarantine_dir), rows_in=rows_in,
        rows_accepted=rows_accepted, rows_quarantined=rows_quarantined, reasons=dict(reasons),
        class_balance=balance, report_json=str(json_path), report_html=str(html_path))


def _dataset_problems(data: DataConfig, rows_in: int, accepted: int, quarantined: int,
                      balance: dict[str, float]) -> list[str]:
    rules = data.validation
    problems = []
    if rows_in != accepted + quarantined:
        problems.append(f"row accounting is off: {rows_in} in, {accepted} accepted, "
                        f"{quarantined} quarantined")
    fraction = quarantined / rows_in if rows_in else 1.0
    if fraction > rules.max_reject_fraction:
        problems.append(f"{fraction:.1%} of rows were quarantined, above "
                        f"data.validation.max_reject_fraction={rules.max_reject_fraction:.1%}")
    if accepted < rules.min_rows:
        problems.append(f"only {accepted} rows passed, below data.validation.min_rows="
                        f"{rules.min_rows}")
    if rules.max_rows is not None and rows_in > rules.max_rows:
        problems.append(f"{rows_in} rows exceed data.validation.max_rows={rules.max_rows}")
    if data.task == "classification" and accepted:
        minority = min(balance.values()) if len(balance) > 1 else 0.0
        if len(balance) < 2:
            problems.append(f"the label has one class only ({list(balance)}): nothing to learn")
        elif minority < rules.min_class_fraction:
            problems.append(f"the rarest class is {minority:.2%} of rows, below "
                            f"data.validation.min_class_fraction={rules.min_class_fraction:.2%}")
    return problems


def _positive_label_note(data: DataConfig) -> str | None:
    positive = data.positive_label
    if isinstance(positive, bool):
        return (f"{positive} (an unquoted YAML boolean): matches "
                f"{'yes/true/y/on/1' if positive else 'no/false/n/off/0'}, case-insensitively")
    return None if positive is None else f"{positive!r}, compared after stripping and case folding"


def _write_reports(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    json_path = out_dir / "validation.json"
    json_path.write_text(json.dumps(report, indent=2, default=str))
    html_path = out_dir / "validation.html"
    html_path.write_text(render_html(report))
    return json_path, html_path


def render_html(report: dict[str, Any]) -> str:
    h = report_html
    verdict = report["verdict"]
    parts = [f"<p><span class='badge {'bad' if verdict == 'fail' else ''}'>"
             f"{h.escape(verdict)}</span></p>"]
    if "rows_in" in report:
        parts.append(f"<p>{report['rows_in']} rows in, {report['rows_accepted']} accepted, "
                     f"{report['rows_quarantined']} quarantined "
                     f"({h.percent(report['reject_fraction'], 2)}; bound "
                     f"{h.percent(report['max_reject_fraction'], 2)}). Quarantined rows and "
                     f"their reasons: <code>{h.escape(report['quarantine'])}</code></p>")
        parts.append(h.figure(h.bar_chart(
            [("accepted", report["rows_accepted"]), ("quarantined", report["rows_quarantined"])],
            title="rows"), "every row is either accepted or quarantined"))
    parts += [f"<p><b>{h.escape(p)}</b></p>" for p in report["problems"]]
    reasons = report.get("reasons", {})
    if reasons:
        parts.append("<h2>Why rows were quarantined</h2>")
        parts.append(h.figure(h.bar_chart(list(reasons.items()), title="rows per reason")))
        parts.append(h.table(["reason", "rows"], list(reasons.items())))
    balance = report.get("class_balance") or {}
    if balance:
        parts.append("<h2>Class balance of accepted rows</h2>")
        parts.append(h.figure(h.bar_chart(list(balance.items()), title="share per label")))
    features = report.get("features")
    if features:
        parts.append("<h2>Features</h2>")
        parts.append(h.table(["kind", "columns"], [[k, ", ".join(v)] for k, v in
                                                   features.items()]))
    excluded = report.get("excluded_columns") or {}
    if excluded:
        parts.append("<h2>Columns that are not features</h2>")
        parts.append(h.table(["column", "why"], list(excluded.items())))
    if report.get("positive_label"):
        parts.append(f"<p>Positive label: {h.escape(report['positive_label'])}</p>")
    parts.append(f"<p>Expected schema: {h.escape(report.get('schema', 'not configured'))}</p>")
    return h.page("Validation report", "".join(parts),
                  subtitle="rows in = accepted + quarantined")
