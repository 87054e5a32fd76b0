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
