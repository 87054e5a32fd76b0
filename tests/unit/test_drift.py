from __future__ import annotations

import numpy as np
import pandas as pd

from raymlops.config import DriftConfig
from raymlops.monitoring.drift import compute_drift, write_report


def tables(n_ref=5000, n_cur=600):
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"shifted": rng.normal(0, 1, n_ref), "same": rng.normal(0, 1, n_ref),
                        "cat": rng.choice(list("abc"), n_ref, p=[0.6, 0.3, 0.1]),
                        "cat_same": rng.choice(list("xy"), n_ref)})
    cur = pd.DataFrame({"shifted": rng.normal(0.8, 1, n_cur), "same": rng.normal(0, 1, n_cur),
                        "cat": rng.choice(list("abc"), n_cur, p=[0.3, 0.3, 0.4]),
                        "cat_same": rng.choice(list("xy"), n_cur)})
    return ref, cur


def test_drift_flags_shifted_columns_only(tmp_path):
    ref, cur = tables()
    report = compute_drift(ref, cur, numeric=["shifted", "same"], categorical=["cat", "cat_same"],
                           config=DriftConfig())
    assert report["verdict"] == "drift"
    assert set(report["drifted_columns"]) == {"shifted", "cat"}
    assert report["columns"]["same"]["verdict"] == "stable"
    assert report["columns"]["cat"]["effect"] > 0.25
    json_path, html_path = write_report(report, tmp_path)
    assert "shifted" in html_path.read_text() and json_path.exists()


def test_identical_distributions_are_stable():
    ref, _ = tables()
    report = compute_drift(ref, ref.sample(800, random_state=1), numeric=["shifted", "same"],
                           categorical=["cat", "cat_same"], config=DriftConfig())
    assert report["verdict"] == "stable" and report["drifted_columns"] == []


def test_too_few_rows_is_not_a_verdict():
    ref, cur = tables(n_cur=20)
    report = compute_drift(ref, cur, numeric=["shifted"], categorical=[],
                           config=DriftConfig(min_rows=50))
    assert report["verdict"] == "insufficient_data"


def test_missing_column_counts_as_drift():
    ref, cur = tables()
    report = compute_drift(ref, cur.drop(columns=["same"]), numeric=["same"], categorical=[],
                           config=DriftConfig())
    assert report["columns"]["same"]["verdict"] == "missing"
    assert report["drifted_columns"] == ["same"]
