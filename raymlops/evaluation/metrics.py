"""Holdout metrics and per-group slices, computed from labels and scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn import metrics as skm

THRESHOLD = 0.5


def classification_metrics(y: np.ndarray, score: np.ndarray) -> dict[str, float]:
    predicted = (score >= THRESHOLD).astype(int)
    out = {
        "accuracy": float(skm.accuracy_score(y, predicted)),
        "precision": float(skm.precision_score(y, predicted, zero_division=0)),
        "recall": float(skm.recall_score(y, predicted, zero_division=0)),
        "f1": float(skm.f1_score(y, predicted, zero_division=0)),
        "positive_rate": float(predicted.mean()) if len(predicted) else 0.0,
    }
    if len(np.unique(y)) == 2:
        out["roc_auc"] = float(skm.roc_auc_score(y, score))
        # scikit-learn's own definition (it clips at the float's machine epsilon); a
        # clip at 1e-7 here gave 3.39 where scikit-learn gives 5.70
        out["log_loss"] = float(skm.log_loss(y, score, labels=[0, 1]))
    return out


def regression_metrics(y: np.ndarray, score: np.ndarray) -> dict[str, float]:
    return {
        "rmse": float(np.sqrt(skm.mean_squared_error(y, score))),
        "mae": float(skm.mean_absolute_error(y, score)),
        "r2": float(skm.r2_score(y, score)) if len(y) > 1 else float("nan"),
    }


def compute(task: str, y: np.ndarray, score: np.ndarray) -> dict[str, float]:
    if task == "classification":
        return classification_metrics(y.astype(int), score)
    return regression_metrics(y, score)


def slices(task: str, frame: pd.DataFrame, columns: list[str], *, label: str,
           score: str) -> dict[str, dict[str, dict[str, float]]]:
    """Metrics per value of each sensitive column (missing values form their own group)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for column in columns:
        groups = frame[column].astype(object).where(frame[column].notna(), "__missing__")
        out[column] = {}
        for value, part in frame.groupby(groups.astype(str), sort=True):
            stats = compute(task, part[label].to_numpy(), part[score].to_numpy())
            stats["rows"] = float(len(part))
            out[column][str(value)] = stats
    return out
