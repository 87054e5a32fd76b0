from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

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


def with_missing(values, share, seed):
    values = pd.Series(values, dtype=float)
    idx = values.sample(frac=share, random_state=seed).index
    values.loc[idx] = np.nan
    return values


def test_a_jump_in_missing_share_is_drift_even_when_present_values_match():
    rng = np.random.default_rng(3)
    ref = pd.DataFrame({"x": rng.normal(0, 1, 5000)})
    cur = pd.DataFrame({"x": with_missing(rng.normal(0, 1, 2000), 0.9, seed=4)})
    report = compute_drift(ref, cur, numeric=["x"], categorical=[], config=DriftConfig())
    col = report["columns"]["x"]
    assert col["verdict"] == "drift" and report["drifted_columns"] == ["x"]
    assert col["missing"]["verdict"] == "drift"
    assert col["missing"]["effect"] == pytest.approx(0.9)
    assert col["missing"]["p_value"] < 1e-10
    assert col["p_value"] == col["missing"]["p_value"]  # the part that decided
    assert col["effect"] == col["missing"]["effect"]
    assert col["statistic"] < 0.1  # the present values alone would be stable
    assert col["reason"].startswith("missing share 0.0% -> 90.0%")
    assert "KS" not in col["reason"]
    assert col["null_share_reference"] == 0.0
    assert col["null_share_current"] == pytest.approx(0.9)


def test_the_same_missing_share_on_both_sides_is_stable():
    rng = np.random.default_rng(5)
    ref = pd.DataFrame({"x": with_missing(rng.normal(0, 1, 5000), 0.3, seed=6)})
    cur = pd.DataFrame({"x": with_missing(rng.normal(0, 1, 2000), 0.3, seed=7)})
    report = compute_drift(ref, cur, numeric=["x"], categorical=[], config=DriftConfig())
    col = report["columns"]["x"]
    assert col["verdict"] == "stable" and col["missing"]["verdict"] == "stable"
    assert col["missing"]["effect"] == pytest.approx(0.0, abs=1e-9)
    assert col["effect"] == col["statistic"]  # stable: the KS part is reported
    assert col["reason"].startswith("no drift: KS statistic")


def test_a_column_entirely_missing_in_current_data_is_drift():
    rng = np.random.default_rng(8)
    ref = pd.DataFrame({"x": rng.normal(0, 1, 3000)})
    cur = pd.DataFrame({"x": [np.nan] * 500})
    report = compute_drift(ref, cur, numeric=["x"], categorical=[], config=DriftConfig())
    col = report["columns"]["x"]
    assert col["verdict"] == "drift" and col["statistic"] is None
    assert col["effect"] == pytest.approx(1.0) and col["current_mean"] is None
    assert col["reason"].startswith("missing share 0.0% -> 100.0%")
    assert sum(col["histogram"]["current"]) == 0.0
    assert sum(col["histogram"]["reference"]) == pytest.approx(1.0, abs=1e-4)


def test_a_column_missing_everywhere_is_stable():
    nans = pd.DataFrame({"x": [np.nan] * 200})
    report = compute_drift(nans, nans, numeric=["x"], categorical=[], config=DriftConfig())
    col = report["columns"]["x"]
    assert col["verdict"] == "stable" and col["missing"] == {"p_value": 1.0, "effect": 0.0,
                                                             "verdict": "stable"}
    assert col["histogram"] == {"edges": [], "reference": [], "current": []}


def test_numeric_result_carries_shared_histogram_and_reasons():
    ref, cur = tables()
    ref["const"], cur["const"] = 7.0, 7.0
    report = compute_drift(ref, cur, numeric=["shifted", "const"], categorical=["cat"],
                           config=DriftConfig())
    hist = report["columns"]["shifted"]["histogram"]
    assert len(hist["edges"]) == 21 and len(hist["reference"]) == len(hist["current"]) == 20
    assert sum(hist["reference"]) == pytest.approx(1.0, abs=1e-4)  # shares rounded to 6 places
    assert sum(hist["current"]) == pytest.approx(1.0, abs=1e-4)
    assert report["columns"]["const"]["histogram"]["edges"] == [6.5, 7.5]
    assert report["columns"]["const"]["verdict"] == "stable"
    assert report["columns"]["shifted"]["reason"].startswith("KS statistic")
    assert report["columns"]["cat"]["reason"].startswith("total variation distance")
    json.dumps(report)  # the report stays JSON-serialisable


def test_html_report_plots_every_column_with_drifted_first(tmp_path):
    ref, cur = tables()
    ref = ref.rename(columns={"same": '<b>&"x"'})
    cur = cur.rename(columns={"same": '<b>&"x"'})
    report = compute_drift(ref, cur, numeric=['<b>&"x"', "shifted"],
                           categorical=["cat_same", "cat"], config=DriftConfig())
    json_path, html_path = write_report(report, tmp_path)
    assert json_path == tmp_path / "drift.json" and html_path == tmp_path / "drift.html"
    assert json.loads(json_path.read_text())["verdict"] == "drift"
    page = html_path.read_text()
    assert page.count("<svg") == 4
    assert '<b>&"x"' not in page and "&lt;b&gt;&amp;&quot;x&quot;" in page
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert page.index("shifted") < page.index("&lt;b&gt;&amp;&quot;x&quot;")
    assert page.index("<h3>cat ") < page.index("<h3>cat_same")
    assert "class='drift'" in page and "missing share" in page
