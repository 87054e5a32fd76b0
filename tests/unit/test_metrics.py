from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from raymlops.evaluation.metrics import compute


def test_log_loss_matches_scikit_learn_even_for_confident_mistakes():
    y = np.array([1, 0, 1, 0, 1])
    score = np.array([1e-12, 0.2, 0.9, 1 - 1e-15, 0.7])
    ours = compute("classification", y.astype(float), score)["log_loss"]
    assert ours == pytest.approx(skm.log_loss(y, score, labels=[0, 1]), abs=1e-9)
    assert ours > 5.0  # a 1e-7 clip capped it at 3.39 on inputs like these


def test_classification_metrics_match_scikit_learn_at_the_threshold():
    from raymlops.evaluation.metrics import expected_calibration_error

    rng = np.random.default_rng(0)
    y = (rng.random(500) < 0.3).astype(int)
    score = np.clip(0.3 * y + rng.random(500) * 0.7, 0, 1)
    ours = compute("classification", y.astype(float), score, threshold=0.4)
    assert ours["pr_auc"] == pytest.approx(skm.average_precision_score(y, score), abs=1e-12)
    assert ours["brier"] == pytest.approx(skm.brier_score_loss(y, score), abs=1e-12)
    assert ours["f1"] == pytest.approx(skm.f1_score(y, score >= 0.4), abs=1e-12)
    assert ours["threshold"] == 0.4
    bins = np.clip((score * 10).astype(int), 0, 9)
    manual = sum((bins == b).sum() * abs(score[bins == b].mean() - y[bins == b].mean())
                 for b in range(10) if (bins == b).any()) / len(y)
    assert expected_calibration_error(y, score) == pytest.approx(manual, abs=1e-12)


@pytest.mark.parametrize(("expression", "rows"), [
    ("income < 20000", 2), ("region == 'north'", 2), ("region in ['north', 'east']", 3),
    ("age >= 60", 1),
])
def test_configured_slices(expression, rows):
    import pandas as pd

    from raymlops.evaluation.metrics import slice_mask

    frame = pd.DataFrame({"income": [10000, 15000, 50000, 90000],
                          "region": ["north", "north", "east", "west"], "age": [20, 30, 40, 61]})
    assert int(slice_mask(frame, expression).sum()) == rows


@pytest.mark.parametrize("bad", ["income <", "income ~ 3", "region == north", "x in 3"])
def test_a_bad_slice_is_refused(bad):
    from raymlops.evaluation.metrics import parse_slice

    with pytest.raises(ValueError):
        parse_slice(bad)
