from __future__ import annotations

import pandas as pd
import pytest
import yaml

from raymlops.config import load_config
from raymlops.data.rules import LABEL, REASON, RowChecker
from raymlops.features.normalize import RowSpec

SPEC = RowSpec(numeric=["age"], categorical=["city"])


def config(**data_overrides):
    data = {"source": "x", "target": "y", "task": "classification",
            "validation": {"ranges": {"age": {"min": 18, "max": 99}}}, **data_overrides}
    return load_config({"data": data, "train": {"framework": "xgboost"}, "deploy": {"name": "m"}})


def make_checker(spec=SPEC, **data_overrides):
    return RowChecker(config(**data_overrides).data, spec)


def test_each_bad_row_gets_a_reason_and_good_rows_none():
    batch = pd.DataFrame({
        "age": [30, "abc", 12, 40, 50, True, "1e400"],
        "city": ["a", "b", "", "c", " d ", "e", "f"],
        "y": [1, 0, 1, None, "maybe", 1, 0],
    })
    out = make_checker()(batch)
    reasons = out[REASON].tolist()
    assert reasons[0] is None
    assert "'age' is not a number" in reasons[1]
    assert "'age' outside [18.0, 99.0]" in reasons[2]
    assert "target 'y' is missing" in reasons[3]
    assert "not 0/1" in reasons[4]
    assert "'age' holds a boolean" in reasons[5]
    assert "'age' is not a finite number" in reasons[6]
    assert pd.isna(out["city"].tolist()[2])
    assert out["city"].tolist()[4] == "d"
    assert out[LABEL].tolist()[:3] == [1.0, 0.0, 1.0]


@pytest.mark.parametrize("positive", ["Yes", " yes", "YES"])
def test_positive_label_matches_after_stripping_and_case_folding(positive):
    out = make_checker(positive_label=positive)(
        pd.DataFrame({"age": [30, 31, 32], "city": ["a", "b", "c"], "y": ["Yes", "No", "yes "]}))
    assert out[LABEL].tolist() == [1.0, 0.0, 1.0]
    assert out[REASON].isna().all()


def test_an_unquoted_yaml_yes_matches_yes_and_true():
    raw = yaml.safe_load("positive_label: Yes")["positive_label"]
    assert raw is True
    checker = make_checker(positive_label=raw)
    out = checker(pd.DataFrame({"age": [30] * 4, "city": ["a"] * 4,
                                "y": ["Yes", "No", "True", "false"]}))
    assert out[LABEL].tolist() == [1.0, 0.0, 1.0, 0.0]


def test_float_labels_from_a_hole_are_not_quarantined_against_an_int_schema():
    """pandas reads a 0/1 label with one hole as 0.0/1.0; `raymlops schema` then said
    ['0.0', '1.0'] and every row of a later int-typed batch was quarantined."""
    checker = RowChecker(config().data, SPEC, labels=["0.0", "1.0"])
    out = checker(pd.DataFrame({"age": [30, 31, 32], "city": ["a", "b", "c"], "y": [0, 1, 2]}))
    assert out[REASON].tolist()[:2] == [None, None]
    assert "outside the expected set" in out[REASON].tolist()[2]
    assert out[LABEL].tolist()[:2] == [0.0, 1.0]


def test_rows_without_an_id_are_quarantined():
    checker = RowChecker(config(id_column="id").data, SPEC)
    out = checker(pd.DataFrame({"id": ["a", None, " ", "d"], "age": [30] * 4,
                                "city": ["x"] * 4, "y": [0, 1, 0, 1]}))
    reasons = out[REASON].tolist()
    assert reasons[0] is None and reasons[3] is None
    assert reasons[1] == reasons[2] == "id 'id' is missing"


def test_not_null_unseen_labels_duplicate_ids_and_blank_numbers():
    cfg = load_config({
        "data": {"source": "x", "target": "y", "task": "classification", "id_column": "id",
                 "positive_label": "Yes", "validation": {"not_null": ["city", "note"]}},
        "train": {"framework": "xgboost"}, "deploy": {"name": "m"}})
    spec = RowSpec(numeric=["charges"], categorical=["city"])
    checker = RowChecker(cfg.data, spec, labels=["No", "Yes"], duplicate_ids=["a"],
                         allowed={"city": ["x", "y"]})
    batch = pd.DataFrame({
        "id": ["a", "a", "b", "c", "d", "e", "f"],
        "charges": ["1.5", "2", " ", "3", "4", "5", "6"],
        "city": ["x", "x", "y", None, "x", "zz", "x"],
        "note": ["n", "n", "n", "n", "n", "n", " "],
        "y": ["Yes", "No", "No", "Yes", "Maybe", "No", "No"],
    })
    out = checker(batch)
    reasons = out[REASON].tolist()
    assert "id 'id' is not unique" in reasons[0] and "id 'id' is not unique" in reasons[1]
    assert reasons[2] is None  # a blank number is missing, not malformed
    assert pd.isna(out["charges"].tolist()[2])
    assert "column 'city' is null" in reasons[3]
    assert "outside the expected set ['No', 'Yes']" in reasons[4]
    assert "'city' has a value outside the allowed set" in reasons[5]
    assert reasons[6] == "column 'note' is null"  # a blank text is null
    assert out[LABEL].tolist()[:3] == [1.0, 0.0, 0.0]


def test_allowed_sets_compare_canonical_texts():
    checker = RowChecker(config(validation={"allowed": {"city": [2, 3]}}).data, SPEC)
    out = checker(pd.DataFrame({"age": [30] * 4, "city": ["2", 2.0, " 3", "4"],
                                "y": [0, 1, 0, 1]}))
    assert out[REASON].tolist()[:3] == [None, None, None]
    assert "outside the allowed set" in out[REASON].tolist()[3]


def test_decimal_numbers_are_numbers_and_ranges_apply():
    import decimal

    checker = make_checker()
    out = checker(pd.DataFrame({"age": [decimal.Decimal("30.5"), decimal.Decimal("150")],
                                "city": ["a", "b"], "y": [0, 1]}))
    assert out["age"].tolist()[0] == 30.5
    assert "outside [18.0, 99.0]" in out[REASON].tolist()[1]


def test_ranges_and_allowed_sets_apply_to_columns_that_are_not_inputs():
    """A range on the regression target, or on a column left out of the features, and an
    allowed set on the label used to be skipped in silence."""
    regression = load_config({
        "data": {"source": "x", "target": "y", "task": "regression",
                 "validation": {"ranges": {"y": {"max": 10}, "note": {"min": 0}}}},
        "train": {"framework": "xgboost"}, "deploy": {"name": "m"}}).data
    out = RowChecker(regression, SPEC)(pd.DataFrame({
        "age": [30] * 4, "city": ["a"] * 4, "y": [1, 100, 2, 3], "note": [1, 2, -5, "x"]}))
    reasons = out[REASON].tolist()
    assert reasons[0] is None
    assert reasons[1] == "column 'y' outside [None, 10.0]"
    assert reasons[2] == "column 'note' outside [0.0, None]"
    assert reasons[3] == "column 'note' is not a number"
    labelled = config(positive_label="Yes", validation={"allowed": {"y": ["Yes", "No"]}})
    out = RowChecker(labelled.data, SPEC)(pd.DataFrame({
        "age": [30] * 3, "city": ["a"] * 3, "y": ["Yes", "No", "Maybe"]}))
    assert out[REASON].tolist()[:2] == [None, None]
    assert "'y' has a value outside the allowed set" in out[REASON].tolist()[2]
