"""``raymlops evaluate``: score any labelled table against a registered version.

This crosses stages (the data stage's label rules, the evaluation stage's metrics), so
it lives with the driver rather than in either stage.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from raymlops.config import PipelineConfig
from raymlops.evaluation import fairness, metrics
from raymlops.evaluation.evaluate import load, score_table
from raymlops.names import LABEL, SCORE


def evaluate_table(files: list[str], *, model_uri: str, tracking_uri: str,
                   config: PipelineConfig) -> dict[str, Any]:
    """Metrics, slices and fairness of a registered version on any labelled table
    (``raymlops evaluate``): the raw rows go through the version's own normalization and
    PII handling, and the label through the version's own positive class."""
    from raymlops._internal.io import read_table
    from raymlops.data.rules import encode_label

    data = config.data
    model = load(model_uri, tracking_uri)
    fitted = model.features
    expression_columns = [metrics.parse_slice(e)[0] for e in config.evaluation.slices]
    keep = list(dict.fromkeys([data.target, *data.sensitive, *fitted.categorical,
                               *expression_columns]))
    start = time.perf_counter()
    scored = score_table(read_table(files), model_uri=model_uri, tracking_uri=tracking_uri,
                         keep=keep, raw=True)
    seconds = time.perf_counter() - start
    label, reasons = encode_label(scored[data.target], data, model.meta.get("positive_label"))
    usable = label.notna() & reasons.isna()
    scored = scored[usable.to_numpy()].assign(**{LABEL: label[usable].to_numpy()})
    y, score = scored[LABEL].to_numpy(dtype=np.float64), scored[SCORE].to_numpy(np.float64)
    cut = model.threshold if getattr(model, "threshold", None) is not None else 0.5
    bins = config.evaluation.calibration_bins
    out: dict[str, Any] = {
        "model_uri": model_uri, "rows": len(scored),
        "rows_without_label": int((~usable).sum()), "threshold": cut,
        "metrics": metrics.compute(data.task, y, score, cut, bins),
        "slices": metrics.slices(data.task, scored, list(dict.fromkeys(
            [*fitted.categorical, *data.sensitive])), label=LABEL, score=SCORE,
            threshold=cut, expressions=config.evaluation.slices),
        "seconds": seconds, "rows_per_s": len(scored) / seconds if seconds > 0 else None,
    }
    if data.task == "classification":
        out["fairness"] = fairness.fairness(y, (score >= cut).astype(int), scored,
                                            list(data.sensitive),
                                            config.evaluation.fairness_min_rows)
    return out
