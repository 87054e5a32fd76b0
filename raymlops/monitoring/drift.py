"""Drift: compare current data (captured serving traffic) with the training reference.

Numeric columns get two tests: the two-sample Kolmogorov-Smirnov test on the present
values (effect: the KS statistic) and a chi-squared test on the missing share (effect:
the absolute difference of the shares), so a column that goes from 0% to 90% missing
drifts even when its remaining values look the same. Categorical columns use a
chi-squared test on the category counts, missing values being a ``__missing__``
category, with the total variation distance as the effect size. A test drifts when its
p-value is below ``monitor.drift.p_value`` *and* its effect reaches
``monitor.drift.min_effect``: with thousands of rows a p-value alone flags differences
too small to matter. A numeric column drifts when either of its tests does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from raymlops._internal import html
from raymlops.config import DriftConfig

MISSING = "__missing__"
HISTOGRAM_BINS = 20
PLOTTED_CATEGORIES = 20


def numeric_drift(reference: pd.Series, current: pd.Series, *,
                  config: DriftConfig | None = None) -> dict[str, Any]:
    """KS test on the present values plus a chi-squared test on the missing share.

    Missing means NaN, unparseable as a number, or infinite. ``p_value``/``effect`` are
    those of the part that decided the verdict (the KS part when stable, if it ran).
    """
    config = config or DriftConfig()
    ref_all, cur_all = _as_float(reference), _as_float(current)
    ref, cur = ref_all[np.isfinite(ref_all)], cur_all[np.isfinite(cur_all)]
    share_ref = 1 - len(ref) / len(ref_all) if len(ref_all) else 0.0
    share_cur = 1 - len(cur) / len(cur_all) if len(cur_all) else 0.0
    missing = _missing_share_test(len(ref_all) - len(ref), len(ref),
                                  len(cur_all) - len(cur), len(cur))
    missing_drift = _drifts(missing["p_value"], missing["effect"], config)
    missing["verdict"] = "drift" if missing_drift else "stable"
    ks_stat: float | None = None
    ks_p: float | None = None
    if len(ref) and len(cur):
        ks = stats.ks_2samp(ref, cur)
        ks_stat, ks_p = float(ks.statistic), float(ks.pvalue)
    ks_drift = _drifts(ks_p, ks_stat, config)
    missing_text = (f"missing share {html.percent(share_ref)} -> {html.percent(share_cur)} "
                    f"({_p(missing['p_value'])})")
    ks_text = (f"KS statistic {ks_stat:.2g}" if ks_stat is not None
               else "KS skipped (no non-missing values on one side)")
    reasons = []
    if ks_drift:
        reasons.append(f"{ks_text} >= {config.min_effect:g} ({_p(ks_p)})")
    if missing_drift:
        reasons.append(missing_text)
    if not reasons:
        ks_part = ks_text if ks_p is None else f"{ks_text} ({_p(ks_p)})"
        reasons.append(f"no drift: {ks_part}; {missing_text}")
    use_ks = ks_drift or (not missing_drift and ks_p is not None)
    edges = html.shared_bins(ref, cur, bins=HISTOGRAM_BINS)
    result: dict[str, Any] = {
        "test": "ks", "statistic": ks_stat,
        "p_value": ks_p if use_ks else missing["p_value"],
        "effect": ks_stat if use_ks else missing["effect"],
        "verdict": "drift" if ks_drift or missing_drift else "stable",
        "reason": "; ".join(reasons), "missing": missing,
        "null_share_reference": float(share_ref), "null_share_current": float(share_cur),
        "reference_mean": float(ref.mean()) if len(ref) else None,
        "current_mean": float(cur.mean()) if len(cur) else None,
        "histogram": {"edges": edges,
                      "reference": [round(s, 6) for s in html.bin_shares(ref, edges)],
                      "current": [round(s, 6) for s in html.bin_shares(cur, edges)]},
    }
    if ks_p is None:
        result["note"] = "no non-missing values on one side: the missing share decides"
    return result


def categorical_drift(reference: pd.Series, current: pd.Series, *,
                      config: DriftConfig | None = None) -> dict[str, Any]:
    """Chi-squared test on the category counts (missing is a category); effect: TVD."""
    config = config or DriftConfig()
    ref = reference.astype(object).where(reference.notna(), MISSING).astype(str)
    cur = current.astype(object).where(current.notna(), MISSING).astype(str)
    categories = sorted(set(ref) | set(cur))
    ref_counts = ref.value_counts().reindex(categories, fill_value=0).to_numpy()
    cur_counts = cur.value_counts().reindex(categories, fill_value=0).to_numpy()
    ref_share = ref_counts / max(int(ref_counts.sum()), 1)
    cur_share = cur_counts / max(int(cur_counts.sum()), 1)
    if len(categories) < 2 or ref_counts.sum() == 0 or cur_counts.sum() == 0:
        chi2, p_value, tvd = 0.0, 1.0, 0.0
    else:
        table = np.vstack([ref_counts, cur_counts])
        table = table[:, table.sum(axis=0) > 0]
        chi2_stat, p_raw, _, _ = stats.chi2_contingency(table)
        chi2, p_value = float(chi2_stat), float(p_raw)
        tvd = 0.5 * float(np.abs(ref_share - cur_share).sum())
    drifted = _drifts(p_value, tvd, config)
    reason = (f"total variation distance {tvd:.2g} >= {config.min_effect:g} ({_p(p_value)})"
              if drifted else
              f"no drift: total variation distance {tvd:.2g} ({_p(p_value)})")
    return {
        "test": "chi2", "statistic": chi2, "p_value": p_value, "effect": tvd,
        "verdict": "drift" if drifted else "stable", "reason": reason,
        "reference_share": dict(zip(categories, ref_share.round(4).tolist(), strict=True)),
        "current_share": dict(zip(categories, cur_share.round(4).tolist(), strict=True)),
    }


def compute_drift(reference: pd.DataFrame, current: pd.DataFrame, *, numeric: list[str],
                  categorical: list[str], config: DriftConfig) -> dict[str, Any]:
    columns: dict[str, Any] = {}
    for column in [*numeric, *categorical]:
        if column not in current.columns:
            columns[column] = {"verdict": "missing", "note": "column absent from current data",
                               "reason": "column absent from current data"}
            continue
        if column in numeric:
            result = numeric_drift(reference[column], current[column], config=config)
        else:
            result = categorical_drift(reference[column], current[column], config=config)
        result.setdefault("null_share_reference", float(reference[column].isna().mean()))
        result.setdefault("null_share_current", float(current[column].isna().mean()))
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
    """``drift.json`` and a self-contained ``drift.html`` (inline SVG plots, opens offline)."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / "drift.json"
    json_path.write_text(json.dumps(report, indent=2))
    html_path = directory / "drift.html"
    html_path.write_text(render_html(report))
    return json_path, html_path


def render_html(report: dict[str, Any]) -> str:
    columns: dict[str, dict[str, Any]] = report["columns"]
    flagged = [c for c, r in columns.items() if r.get("verdict") in ("drift", "missing")]
    ordered = [*flagged, *(c for c in columns if c not in flagged)]
    th = report["thresholds"]
    verdict = str(report["verdict"])
    badge = {"drift": "drift", "stable": ""}.get(verdict, "warn")
    head = (
        f"<p>Verdict: <span class='badge {badge}'>{html.escape(verdict)}</span> "
        f"&mdash; {html.escape(report['current_rows'])} current rows against "
        f"{html.escape(report['reference_rows'])} reference rows; "
        f"{html.escape(len(flagged))} of {html.escape(len(columns))} columns flagged"
        + (f": {html.escape(', '.join(flagged))}" if flagged else "") + ".</p>"
        f"<p>A test drifts when p &lt; {html.escape(th.get('p_value'))} and its effect &ge; "
        f"{html.escape(th.get('min_effect'))}; a verdict needs at least "
        f"{html.escape(th.get('min_rows'))} current rows. Numeric columns: KS test on the "
        "present values (effect: KS statistic) or chi-squared test on the missing share "
        "(effect: share difference). Categorical columns: chi-squared test, effect: total "
        "variation distance, missing values as a category.</p>"
    )
    rows, classes = [], []
    for c in ordered:
        r = columns[c]
        shares = (f"{html.percent(r['null_share_reference'])} -> "
                  f"{html.percent(r['null_share_current'])}"
                  if "null_share_reference" in r else "")
        rows.append([c, r.get("test", ""), r.get("effect"), r.get("p_value"), shares,
                     r.get("verdict", ""), r.get("reason", "")])
        classes.append("drift" if c in flagged else None)
    summary = html.table(["column", "test", "effect", "p-value", "missing share ref -> cur",
                          "verdict", "reason"], rows, row_classes=classes)
    sections = "".join(_column_section(c, columns[c], c in flagged) for c in ordered)
    body = f"{head}<h2>Summary</h2>{summary}<h2>Columns</h2>{sections}"
    return html.page(f"Drift report: {verdict}", body,
                     subtitle="current data against the training reference")


def _column_section(column: str, result: dict[str, Any], flagged: bool) -> str:
    css = "item drift" if flagged else "item"
    title = (f"<h3>{html.escape(column)} <span class='badge {'drift' if flagged else ''}'>"
             f"{html.escape(result.get('verdict', ''))}</span></h3>"
             f"<p>{html.escape(result.get('reason', ''))}</p>")
    if result.get("verdict") == "missing":
        return f"<section class='{css}'>{title}</section>"
    missing = (f"missing share {html.percent(result.get('null_share_reference'))} (reference) "
               f"-> {html.percent(result.get('null_share_current'))} (current)")
    if "histogram" in result:
        hist = result["histogram"]
        chart = html.histogram_pair(hist["edges"], hist["reference"], hist["current"],
                                    title=column, x_label=column,
                                    y_label="share of present values")
        caption = (f"Reference vs current on {max(len(hist['edges']) - 1, 0)} shared bins "
                   "(pooled 1st-99th percentile; tails counted in the end bins); " + missing)
    else:
        ref_share = result.get("reference_share", {})
        cur_share = result.get("current_share", {})
        cats = sorted(set(ref_share) | set(cur_share),
                      key=lambda k: -max(ref_share.get(k, 0.0), cur_share.get(k, 0.0)))
        shown, rest = cats[:PLOTTED_CATEGORIES], cats[PLOTTED_CATEGORIES:]
        labels = list(shown)
        ref_vals = [ref_share.get(k, 0.0) for k in shown]
        cur_vals = [cur_share.get(k, 0.0) for k in shown]
        if rest:
            labels.append(f"({len(rest)} others)")
            ref_vals.append(sum(ref_share.get(k, 0.0) for k in rest))
            cur_vals.append(sum(cur_share.get(k, 0.0) for k in rest))
        chart = html.grouped_bar_chart(labels, {"reference": ref_vals, "current": cur_vals},
                                       title=column, x_label=column, y_label="share")
        caption = (f"Share of each category, reference vs current ({MISSING} = missing"
                   + (f"; {len(rest)} rarer categories grouped" if rest else "") + ")")
    return f"<section class='{css}'>{title}{html.figure(chart, caption)}</section>"


def _as_float(series: pd.Series) -> np.ndarray:
    return np.asarray(pd.to_numeric(series, errors="coerce"), dtype=float)


def _missing_share_test(missing_ref: int, present_ref: int, missing_cur: int,
                        present_cur: int) -> dict[str, Any]:
    n_ref, n_cur = missing_ref + present_ref, missing_cur + present_cur
    if n_ref == 0 or n_cur == 0 or missing_ref + missing_cur == 0 \
            or present_ref + present_cur == 0:
        return {"p_value": 1.0, "effect": 0.0}
    table = np.array([[missing_ref, present_ref], [missing_cur, present_cur]])
    _, p_value, _, _ = stats.chi2_contingency(table)
    return {"p_value": float(p_value), "effect": abs(missing_ref / n_ref - missing_cur / n_cur)}


def _drifts(p_value: float | None, effect: float | None, config: DriftConfig) -> bool:
    return (p_value is not None and effect is not None and p_value < config.p_value
            and effect >= config.min_effect)


def _p(p_value: float | None) -> str:
    if p_value is None:
        return "p n/a"
    return "p<1e-300" if p_value == 0 else f"p={p_value:.2g}"
