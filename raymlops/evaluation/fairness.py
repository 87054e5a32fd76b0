"""Fairness per sensitive column, with fairlearn's own definitions.

For each ``data.sensitive`` column: the selection rate, true and false positive rates
and row count per group (``fairlearn.metrics.MetricFrame``), the demographic parity
difference and ratio, the equalized odds difference, and the disparate impact ratio:
the lowest group's selection rate over the highest's, the quantity of the four-fifths
rule (with fairlearn's ``method="between_groups"`` this equals the demographic parity
ratio). Decisions are the model's scores at its chosen threshold. A missing value of the
sensitive column is its own group.
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


def fairness_of(y_true: np.ndarray, decisions: np.ndarray, sensitive: pd.Series) -> dict[str, Any]:
    """The fairness numbers of one sensitive column (``decisions`` are 0/1)."""
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
    by_group = {str(g): {k: _clean(v) if k != "rows" else int(v) for k, v in row.items()}
                for g, row in frame.by_group.to_dict("index").items()}
    rates = [r["selection_rate"] for r in by_group.values() if r["selection_rate"] is not None]
    return {
        "groups": by_group,
        "demographic_parity_difference": _clean(demographic_parity_difference(
            y, d, sensitive_features=groups)),
        "demographic_parity_ratio": _clean(demographic_parity_ratio(
            y, d, sensitive_features=groups)),
        "equalized_odds_difference": _clean(equalized_odds_difference(
            y, d, sensitive_features=groups)),
        "disparate_impact_ratio": (_clean(min(rates) / max(rates)) if rates and max(rates) > 0
                                   else None),
    }


def fairness(y_true: np.ndarray, decisions: np.ndarray,
             frame: pd.DataFrame, columns: list[str]) -> dict[str, dict[str, Any]]:
    """Per sensitive column present in ``frame``."""
    return {c: fairness_of(y_true, decisions, frame[c]) for c in columns if c in frame.columns}
