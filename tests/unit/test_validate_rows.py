from __future__ import annotations

import pandas as pd

from raymlops.config import load_config
from raymlops.data.rules import LABEL, REASON, RowChecker


def make_checker(**data_overrides):
    data = {"source": "x", "target": "y", "task": "classification",
            "validation": {"ranges": {"age": {"min": 18, "max": 99}}}, **data_overrides}
    cfg = load_config({"data": data, "train": {"framework": "xgboost"}, "deploy": {"name": "m"}})
    return RowChecker(cfg.data, ["age"], ["city"])


def test_each_bad_row_gets_a_reason_and_good_rows_none():
    batch = pd.DataFrame({
        "age": [30, "abc", 12, 40, 50],
        "city": ["a", "b", "", "c", " d "],
        "y": [1, 0, 1, None, "maybe"],
    })
    out = make_checker()(batch)
    reasons = out[REASON].tolist()
    assert reasons[0] is None
    assert "'age' is not a number" in reasons[1]
    assert "'age' outside [18.0, 99.0]" in reasons[2]
    assert "target 'y' is missing" in reasons[3]
    assert "not 0/1" in reasons[4]
    assert out["city"].tolist()[2] is pd.NA or pd.isna(out["city"].tolist()[2])
    assert out["city"].tolist()[4] == "d"
    assert out[LABEL].tolist()[:3] == [1.0, 0.0, 1.0]


def test_positive_label_maps_string_labels():
    out = make_checker(positive_label="Yes")(
        pd.DataFrame({"age": [30, 31], "city": ["a", "b"], "y": ["Yes", "No"]}))
    assert out[LABEL].tolist() == [1.0, 0.0]
    assert out[REASON].isna().all()


def test_not_null_unseen_labels_duplicate_ids_and_blank_numbers():
    cfg = load_config({
        "data": {"source": "x", "target": "y", "task": "classification", "id_column": "id",
                 "positive_label": "Yes", "validation": {"not_null": ["city"]}},
        "train": {"framework": "xgboost"}, "deploy": {"name": "m"}})
    checker = RowChecker(cfg.data, ["charges"], ["city"], labels=["No", "Yes"],
                         duplicate_ids=["a"], allowed={"city": ["x", "y"]})
    batch = pd.DataFrame({
        "id": ["a", "a", "b", "c", "d", "e"],
        "charges": ["1.5", "2", " ", "3", "4", "5"],
        "city": ["x", "x", "y", None, "x", "zz"],
        "y": ["Yes", "No", "No", "Yes", "Maybe", "No"],
    })
    out = checker(batch)
    reasons = out[REASON].tolist()
    assert "id 'id' is not unique" in reasons[0] and "id 'id' is not unique" in reasons[1]
    assert reasons[2] is None  # a blank number is missing, not malformed
    assert pd.isna(out["charges"].tolist()[2])
    assert "column 'city' is null" in reasons[3]
    assert "outside the expected set ['No', 'Yes']" in reasons[4]
    assert "'city' has a value outside the allowed set" in reasons[5]
    assert out[LABEL].tolist()[:3] == [1.0, 0.0, 0.0]
