"""The curves and tables a model card plots: ROC, precision-recall, calibration, confusion.

Pure numpy and scikit-learn on labels and scores; the card (``raymlops.evaluation.card``)
draws them as inline SVG.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn import metrics as skm


def _thin(xs: np.ndarray, ys: np.ndarray, points: int = 200) -> tuple[list[float], list[float]]:
    if len(xs) <= points:
        return [float(x) for x in xs], [float(y) for y in ys]
    keep = np.unique(np.linspace(0, len(xs) - 1, points).round().astype(int))
    return [float(x) for x in xs[keep]], [float(y) for y in ys[keep]]


def roc_curve(y: np.ndarray, score: np.ndarray) -> dict[str, list[float]]:
    if len(np.unique(y)) < 2:
        return {"fpr": [], "tpr": []}
    fpr, tpr, _ = skm.roc_curve(y, score)
    x, v = _thin(fpr, tpr)
    return {"fpr": x, "tpr": v}


def pr_curve(y: np.ndarray, score: np.ndarray) -> dict[str, list[float]]:
    if len(np.unique(y)) < 2:
        return {"recall": [], "precision": []}
    precision, recall, _ = skm.precision_recall_curve(y, score)
    x, v = _thin(recall[::-1], precision[::-1])
    return {"recall": x, "precision": v}


def calibration(y: np.ndarray, score: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Equal-width bins of the score: mean score, share of positives and rows per bin;
    the expected calibration error is their row-weighted mean absolute gap."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(score, edges[1:-1], right=False), 0, bins - 1)
    rows, mean_score, positives = [], [], []
    for b in range(bins):
        inside = which == b
        rows.append(int(inside.sum()))
        mean_score.append(float(score[inside].mean()) if inside.any() else None)
        positives.append(float(y[inside].mean()) if inside.any() else None)
    n = max(len(y), 1)
    ece = sum(r * abs(s - p) for r, s, p in zip(rows, mean_score, positives, strict=True)
              if r and s is not None and p is not None) / n
    return {"edges": edges.tolist(), "rows": rows, "mean_score": mean_score,
            "positive_rate": positives, "ece": float(ece)}


def confusion(y: np.ndarray, decisions: np.ndarray) -> dict[str, int]:
    tn, fp, fn, tp = skm.confusion_matrix(y, decisions, labels=[0, 1]).ravel()
    return {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)}
