"""Drift: compare current data (captured serving traffic) with the training reference.

Numeric columns use the two-sample Kolmogorov-Smirnov test, whose statistic is the
effect size; categorical columns use a chi-squared test on the category counts, with
the total variation distance as the effect size. A column drifts when its p-value is
below ``monitor.drift.p_value`` *and* its effect reaches ``monitor.drift.min_effect``:
with thousands of rows a p-value alone flags differences too small to matter.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from raymlops.config import DriftConfig


def numeric_drift(reference: pd.Series, current: pd.Series) -> dict[str, Any]:
    ref = pd.to_numeric(reference, errors="coerce").dropna().to_numpy(dtype=float)
    cur = pd.to_numeric(current, errors="coerce").dropna().to_numpy(dtype=float)
    if len(ref) == 0 or len(cur) == 0:
        return {"test": "ks", "statistic": None, "p_value": None, "effect": None,
                "note": "no non-missing values on one side"}
    result = stats.ks_2samp(ref, cur)
    return {
        "test": "ks", "statistic": float(result.statistic), "p_value": float(result.pvalue),
        "effect": float(result.statistic),
        "reference_mean": float(ref.mean()), "current_mean": float(cur.mean()),
    }


def categorical_drift(reference: pd.Series, current: pd.Series) -> dict[str, Any]:
    ref = reference.astype(object).where(reference.notna(), "__missing__").astype(str)
    cur = current.astype(object).where(current.notna(), "__missing__").astype(str)
    categories = sorted(set(ref) | set(cur))
    ref_counts = ref.value_counts().reindex(categories, fill_value=0).to_numpy()
    cur_counts = cur.value_counts().reindex(categories, fill_value=0).to_numpy()
    if len(categories) < 2 or ref_counts.sum() == 0 or cur_counts.sum() == 0:
        return {"test": "chi2", "statistic": 0.0, "p_value": 1.0, "effect": 0.0}
    table = np.vstack([ref_counts, cur_counts])
    table = table[:, table.sum(axis=0) > 0]
    chi2, p_value, _, _ = stats.chi2_contingency(table)
    ref_share = ref_counts / ref_counts.sum()
    cur_share = cur_counts / cur_counts.sum()
    tvd = 0.5 * float(np.abs(ref_share - cur_share).sum())
    return {
        "test": "chi2", "statistic": float(chi2), "p_value": float(p_value), "effect": tvd,
        "reference_share": dict(zip(categories, ref_share.round(4).tolist(), strict=True)),
        "current_share": dict(zip(categories, cur_share.round(4).tolist(), strict=True)),
    }


def compute_drift(reference: pd.DataFrame, current: pd.DataFrame, *, numeric: list[str],
                  categorical: list[str], config: DriftConfig) -> dict[str, Any]:
    columns: dict[str, Any] = {}
    for column in [*numeric, *categorical]:
        if column not in current.columns:
            columns[column] = {"verdict": "missing", "note": "column absent from current data"}
            continue
        if column in numeric:
            result = numeric_drift(reference[column], current[column])
        else:
            result = categorical_drift(reference[column], current[column])
        p_value, effect = result.get("p_value"), result.get("effect")
        drifted = (p_value is not None and effect is not None and p_value < config.p_value
                   and effect >= config.min_effect)
        result["null_share_reference"] = float(reference[column].isna().mean())
        result["null_share_current"] = float(current[column].isna().mean())
        result["verdict"] = "drift" if drifted else "stable"
        columns[column] = result
    drifted_columns = [c for c, r in columns.items() if r["verdict"] in ("drift", "missing")]
    enough = len(current) >= config.min_rows
    return {
        "reference_rows": len(reference), "current_rows": len(current),
        "enough_rows": enough, "thresholds": config.model_dump(),
        "drifted_columns": drifted_columns if enough else [],
        "share_drifted": len(drifted_columns) / max(len(columns), 1) if enough else 0.0,
        "verdict": ("insufficient_data" if not enough else
                    "drift" if drifted_columns else "stable"),
        "columns": columns,
    }


def write_report(report: dict[str, Any], directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / "drift.json"
    json_path.write_text(json.dumps(report, indent=2))
    rows = "".join(
        f"<tr><td>{html.escape(c)}</td><td>{r.get('test', '')}</td>"
        f"<td>{_fmt(r.get('effect'))}</td><td>{_fmt(r.get('p_value'))}</td>"
        f"<td><b>{r['verdict']}</b></td></tr>"
        for c, r in report["columns"].items()
    )
    html_path = directory / "drift.html"
    html_path.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>Drift report</title></head>"
        f"<body><h1>Drift: {report['verdict']}</h1><p>{report['current_rows']} current rows "
        f"against {report['reference_rows']} reference rows; drift when p &lt; "
        f"{report['thresholds']['p_value']} and effect &ge; {report['thresholds']['min_effect']}."
        "</p><table border=1><tr><th>column</th><th>test</th><th>effect</th><th>p-value</th>"
        f"<th>verdict</th></tr>{rows}</table></body></html>"
    )
    return json_path, html_path


def _fmt(value: Any) -> str:
    return "" if value is None else f"{value:.4g}"
