"""Holdout metrics and slices, computed from labels and scores.

Classification, at the model's decision threshold: accuracy, precision, recall, F1,
the positive rate, and threshold-free ROC AUC, PR AUC (average precision), log loss,
Brier score and expected calibration error. Regression: RMSE, MAE, R2. The definitions
are scikit-learn's (log loss included: it clips at the float's machine epsilon).

Slices: every value of each categorical input and sensitive column (missing values are
their own slice), and the configured expressions ``column op value`` with ``op`` one of
``< <= > >= == != in``, for example ``income < 20000`` or ``region in ['north']``.
"""

from __future__ import annotations

import ast
import operator
import re
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

THRESHOLD = 0.5
_SLICE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(<=|>=|==|!=|<|>|\bin\b)\s*(.+?)\s*$")
_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
        "==": operator.eq, "!=": operator.ne}


def expected_calibration_error(y: np.ndarray, score: np.ndarray, bins: int = 10) -> float:
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(score, edges[1:-1], right=False), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.sum() * abs(float(score[inside].mean()) - float(y[inside].mean()))
    return total / max(len(y), 1)


def classification_metrics(y: np.ndarray, score: np.ndarray, threshold: float = THRESHOLD,
                           bins: int = 10) -> dict[str, float]:
    predicted = (score >= threshold).astype(int)
    out = {
        "accuracy": float(skm.accuracy_score(y, predicted)),
        "precision": float(skm.precision_score(y, predicted, zero_division=0)),
        "recall": float(skm.recall_score(y, predicted, zero_division=0)),
        "f1": float(skm.f1_score(y, predicted, zero_division=0)),
        "positive_rate": float(predicted.mean()) if len(predicted) else 0.0,
        "brier": float(skm.brier_score_loss(y, score)) if len(y) else float("nan"),
        "ece": float(expected_calibration_error(y, score, bins)),
        "threshold": float(threshold),
    }
    if len(np.unique(y)) == 2:
        out["roc_auc"] = float(skm.roc_auc_score(y, score))
        out["pr_auc"] = float(skm.average_precision_score(y, score))
        out["log_loss"] = float(skm.log_loss(y, score, labels=[0, 1]))
    return out


def regression_metrics(y: np.ndarray, score: np.ndarray) -> dict[str, float]:
    return {
        "rmse": float(np.sqrt(skm.mean_squared_error(y, score))),
        "mae": float(skm.mean_absolute_error(y, score)),
        "r2": float(skm.r2_score(y, score)) if len(y) > 1 else float("nan"),
    }


def compute(task: str, y: np.ndarray, score: np.ndarray, threshold: float = THRESHOLD,
            bins: int = 10) -> dict[str, float]:
    if task == "classification":
        return classification_metrics(y.astype(int), score, threshold, bins)
    return regression_metrics(y, score)


def parse_slice(expression: str) -> tuple[str, str, Any]:
    """``"income < 20000"`` -> ("income", "<", 20000); a ValueError names what is wrong."""
    match = _SLICE.match(expression)
    if match is None:
        raise ValueError(f"{expression!r}: expected 'column op value' with op one of "
                         "<, <=, >, >=, ==, !=, in")
    column, op, literal = match[1], match[2], match[3]
    try:
        value = ast.literal_eval(literal)
    except (ValueError, SyntaxError):
        raise ValueError(f"{expression!r}: {literal!r} is not a literal (quote text)") from None
    if op == "in" and not isinstance(value, list | tuple | set):
        raise ValueError(f"{expression!r}: 'in' takes a list, e.g. ['north', 'south']")
    return column, op, value


def slice_mask(frame: pd.DataFrame, expression: str) -> np.ndarray:
    column, op, value = parse_slice(expression)
    series = frame[column]
    if op == "in":
        from raymlops.features.normalize import canonical_text

        wanted = {canonical_text(v) for v in value}
        return series.map(canonical_text).isin(wanted).to_numpy(dtype=bool)
    if isinstance(value, int | float) and not isinstance(value, bool):
        numbers = pd.to_numeric(series, errors="coerce")
        return _OPS[op](numbers, value).fillna(False).to_numpy(dtype=bool)
    return _OPS[op](series.astype(object), value).fillna(False).to_numpy(dtype=bool)


def slices(task: str, frame: pd.DataFrame, columns: list[str], *, label: str, score: str,
           threshold: float = THRESHOLD,
           expressions: list[str] = ()) -> dict[str, dict[str, dict[str, float]]]:  # type: ignore[assignment]
    """Metrics per value of each column, and per configured expression."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for column in columns:
        if column not in frame.columns:
            continue
        groups = frame[column].astype(object).where(frame[column].notna(), "__missing__")
        out[column] = {}
        for value, part in frame.groupby(groups.astype(str), sort=True):
            stats = compute(task, part[label].to_numpy(), part[score].to_numpy(), threshold)
            stats["rows"] = float(len(part))
            out[column][str(value)] = stats
    for expression in expressions:
        mask = slice_mask(frame, expression)
        part = frame[mask]
        stats = compute(task, part[label].to_numpy(), part[score].to_numpy(), threshold) \
            if len(part) else {}
        stats["rows"] = float(len(part))
        out.setdefault("expressions", {})[expression] = stats
    return out
