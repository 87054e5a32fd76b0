"""Feature importance per input column, for the model card.

XGBoost: its own per-feature contributions (``pred_contribs``, SHAP values for trees)
over a sample of the holdout rows, as the mean absolute contribution, summed from the
one-hot features back to their input column. torch: permutation importance, the drop in
the holdout metric when one input column is shuffled, averaged over repeats.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

SAMPLE_ROWS = 2000


def _metric(task: str, y: np.ndarray, score: np.ndarray) -> float:
    from sklearn import metrics as skm

    if task == "classification":
        return float(skm.roc_auc_score(y, score)) if len(np.unique(y)) == 2 else float("nan")
    return -float(np.sqrt(np.mean((y - score) ** 2)))


def xgboost_contributions(model: Any, frame: pd.DataFrame) -> dict[str, float]:
    import xgboost

    fitted = model.features
    matrix = fitted.onehot(*fitted.encode_normalized(frame))
    kwargs = {"iteration_range": model.iteration_range} if model.iteration_range else {}
    contributions = model.booster.predict(
        xgboost.DMatrix(matrix, feature_names=fitted.feature_names), pred_contribs=True,
        **kwargs)
    mean_abs = np.abs(contributions[:, :-1]).mean(axis=0)  # the last column is the bias
    out: dict[str, float] = {}
    for name, value in zip(fitted.feature_names, mean_abs, strict=True):
        column = fitted.sources.get(name, {}).get("column", name)
        out[column] = out.get(column, 0.0) + float(value)
    return out


def permutation(model: Any, frame: pd.DataFrame, y: np.ndarray, task: str, *,
                repeats: int = 3, seed: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    base = _metric(task, y, model.predict_normalized(frame))
    out = {}
    for column in model.features.input_columns:
        drops = []
        for _ in range(repeats):
            shuffled = frame.copy()
            shuffled[column] = frame[column].to_numpy()[rng.permutation(len(frame))]
            drops.append(base - _metric(task, y, model.predict_normalized(shuffled)))
        out[column] = float(np.mean(drops))
    return out


def importance(model: Any, frame: pd.DataFrame, y: np.ndarray, task: str) -> dict[str, Any]:
    """``{"method", "values": {column: importance}, "note"}`` on at most 2,000 rows."""
    if len(frame) > SAMPLE_ROWS:
        keep = np.random.default_rng(0).choice(len(frame), SAMPLE_ROWS, replace=False)
        frame, y = frame.iloc[np.sort(keep)], y[np.sort(keep)]
    if getattr(model, "framework", "xgboost") == "xgboost":
        values = xgboost_contributions(model, frame)
        method = "mean |SHAP contribution| (XGBoost pred_contribs), summed per input column"
    else:
        values = permutation(model, frame, y, task)
        method = ("permutation importance: the drop in "
                  f"{'ROC AUC' if task == 'classification' else '-RMSE'} when one column is "
                  "shuffled (mean of 3)")
    ranked = dict(sorted(values.items(), key=lambda kv: -abs(kv[1])))
    return {"method": method, "values": ranked, "note": f"on {len(frame)} holdout rows"}
