from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from raymlops.data import demo


def test_generator_is_deterministic_by_seed():
    a = demo.make_lending_table(500, seed=3)
    b = demo.make_lending_table(500, seed=3)
    c = demo.make_lending_table(500, seed=4)
    assert a.equals(b)
    assert not a.equals(c)


def test_table_has_the_shape_of_a_real_lending_table():
    t = demo.make_lending_table(5000, seed=1)
    assert set(demo.NUMERIC) | set(demo.CATEGORICAL) | {demo.ID_COLUMN, demo.TARGET} == set(t)
    assert t[demo.ID_COLUMN].str.contains("@").all()
    assert t[demo.ID_COLUMN].is_unique
    assert set(t["gender"]) <= {"F", "M", "X"}
    assert 0.1 < t[demo.TARGET].mean() < 0.4
    for column in ("income", "employment_years", "home_ownership"):
        assert 0.005 < t[column].isna().mean() < 0.15


def test_label_has_real_but_imperfect_signal():
    t = demo.make_lending_table(20000, seed=2)
    auc = roc_auc_score(t[demo.TARGET], -t["credit_score"])
    assert 0.6 < auc < 0.9


def test_production_batch_drifts_in_the_documented_columns_only():
    ref = demo.make_lending_table(20000, seed=5)
    prod = demo.make_lending_table(20000, seed=6, drifted=True)
    assert prod["income"].median() < 0.8 * ref["income"].median()
    assert prod["credit_score"].mean() < ref["credit_score"].mean() - 30
    assert (prod["purpose"] == "medical").mean() > 3 * (ref["purpose"] == "medical").mean()
    for stable in ("age", "loan_amount", "open_accounts"):
        assert abs(prod[stable].mean() - ref[stable].mean()) < 0.05 * ref[stable].std() * 10
        assert np.isclose(prod[stable].std(), ref[stable].std(), rtol=0.1)
    assert set(demo.DRIFTED_COLUMNS) == {"income", "credit_score", "purpose"}


def test_write_demo_data_is_idempotent(tmp_path):
    paths = demo.write_demo_data(tmp_path, rows=200, production_rows=50)
    mtime = paths["train"].stat().st_mtime_ns
    again = demo.write_demo_data(tmp_path, rows=200, production_rows=50)
    assert again == paths and paths["train"].stat().st_mtime_ns == mtime
    assert len(paths["production"].read_text().splitlines()) == 51
