"""Fairness per sensitive column, with fairlearn's own definitions.

For each ``data.sensitive`` column: the selection rate, true and false positive rates
and row count per group (``fairlearn.metrics.MetricFrame``), the demographic parity
difference and ratio, the equalized odds difference, and the disparate impact ratio:
the lowest group's selection rate over the highest's, the quantity of the four-fifths
rule (with fairlearn's ``method="between_groups"`` this equals the demographic parity
ratio). Decisions are the model's scores at its chosen threshold. A missing value of the
sensitive column is its own group.

A group with fewer than ``min_rows`` rows (``evaluation.fairness_min_rows``) is reported
but not judged: the four measures are taken over the groups that have enough rows. A
3 % group is about 20 rows of a 600-row holdout, where one row moves its selection rate
by 0.05, so a bound on the difference would be a coin toss (CI saw 0.28 on such a group
of a model that never sees the column). With fewer than two judged groups the measures
are not computed and a gate on them fails, naming the groups and their rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

MISSING_GROUP = "__missing__"

#: The fairness numbers a gate can bound (``gates.fairness``), and whether lower is fairer.
FAIRNESS_METRICS = {
    "demographic_parity_difference": "lower",
    "demographic_parity_ratio": "higher",
    "equalized_odds_difference": "lower",
    "disparate_impact_ratio": "higher",
}


def groups_of(values: pd.Series) -> pd.Series:
    texts = values.astype(object).where(values.notna(), MISSING_GROUP)
    return texts.astype(str).reset_index(drop=True)


def _clean(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def fairness_of(y_true: np.ndarray, decisions: np.ndarray, sensitive: pd.Series,
                min_rows: int = 1) -> dict[str, Any]:
    """The fairness numbers of one sensitive column (``decisions`` are 0/1), over its
    groups of at least ``min_rows`` rows."""
    from fairlearn.metrics import (
        MetricFrame,
        count,
        demographic_parity_difference,
        demographic_parity_ratio,
        equalized_odds_difference,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )

    y = np.asarray(y_true, dtype=int)
    d = np.asarray(decisions, dtype=int)
    groups = groups_of(sensitive)
    frame = MetricFrame(metrics={"selection_rate": selection_rate, "tpr": true_positive_rate,
                                 "fpr": false_positive_rate, "rows": count},
                        y_true=y, y_pred=d, sensitive_features=groups)
    by_group = {str(g): {**{k: _clean(v) if k != "rows" else int(v) for k, v in row.items()},
                         "judged": int(row["rows"]) >= min_rows}
                for g, row in frame.by_group.to_dict("index").items()}
    judged = [g for g, r in by_group.items() if r["judged"]]
    out: dict[str, Any] = {
        "groups": by_group, "min_rows": min_rows,
        "not_judged": {g: r["rows"] for g, r in by_group.items() if not r["judged"]},
        **dict.fromkeys(FAIRNESS_METRICS),
    }
    if len(judged) < 2:
        return out
    keep = groups.isin(judged).to_numpy()
    y, d, groups = y[keep], d[keep], groups[keep]
    chosen = (by_group[g]["selection_rate"] for g in judged)
    rates = [float(r) for r in chosen if r is not None]
    out.update({
        "demographic_parity_difference": _clean(demographic_parity_difference(
            y, d, sensitive_features=groups)),
        "demographic_parity_ratio": _clean(demographic_parity_ratio(
            y, d, sensitive_features=groups)),
        "equalized_odds_difference": _clean(equalized_odds_difference(
            y, d, sensitive_features=groups)),
        "disparate_impact_ratio": (_clean(min(rates) / max(rates)) if rates and max(rates) > 0
                                   else None),
    })
    return out


def left_out(numbers: dict[str, Any]) -> str:
    """Which groups a column's measures leave out, for a reason: '' when none."""
    small = numbers.get("not_judged") or {}
    if not small:
        return ""
    listed = ", ".join(f"{g}: {n} rows" for g, n in sorted(small.items()))
    return (f"groups below evaluation.fairness_min_rows={numbers.get('min_rows')} "
            f"not judged ({listed})")


def fairness(y_true: np.ndarray, decisions: np.ndarray, frame: pd.DataFrame,
             columns: list[str], min_rows: int = 1) -> dict[str, dict[str, Any]]:
    """Per sensitive column present in ``frame``."""
    return {c: fairness_of(y_true, decisions, frame[c], min_rows)
            for c in columns if c in frame.columns}
