"""A config cannot silently switch a check off; features are never ids, PII or timestamps."""

from __future__ import annotations

import pandas as pd
import pytest

from raymlops.config import load_config
from raymlops.data.columns import check_columns, drop_identifiers, infer_feature_types
from raymlops.errors import ConfigError
from raymlops.features.stats import PartialStats, merge_stats
from raymlops.workspace import check_run_id

NAMES = ["customer_id", "tenure", "monthly", "contract", "churn", "email", "birth_year"]


def data_config(**data):
    base = {"source": "x", "target": "churn", "task": "classification"}
    return load_config({"data": {**base, **data}, "train": {"framework": "xgboost"},
                        "deploy": {"name": "m"}}).data


@pytest.mark.parametrize(("data", "key", "column"), [
    ({"validation": {"not_null": ["contrct"]}}, "data.validation.not_null[0]", "contrct"),
    ({"validation": {"ranges": {"tenur": {"min": 0}}}}, "data.validation.ranges.tenur", "tenur"),
    ({"validation": {"allowed": {"contract_type": ["a"]}}},
     "data.validation.allowed.contract_type", "contract_type"),
    ({"clip": {"monthy": {"max": 10}}}, "data.clip.monthy", "monthy"),
    ({"pii": {"e_mail": "hash"}}, "data.pii.e_mail", "e_mail"),
    ({"sensitive": ["gender"]}, "data.sensitive[0]", "gender"),
    ({"categorical": ["contract", "partner"]}, "data.categorical[1]", "partner"),
    ({"numeric": ["tenure_months"]}, "data.numeric[0]", "tenure_months"),
    ({"id_column": "customerid"}, "data.id_column", "customerid"),
    ({"target": "Churn"}, "data.target", "Churn"),
])
def test_a_column_the_data_lacks_is_a_config_error_naming_key_and_closest_name(data, key,
                                                                               column):
    with pytest.raises(ConfigError) as err:
        check_columns(data_config(**data), NAMES)
    message = str(err.value)
    assert message.startswith(f"{key}: column {column!r} is not in the data")


def test_the_closest_existing_name_is_suggested():
    with pytest.raises(ConfigError, match=r"did you mean .contract."):
        check_columns(data_config(validation={"not_null": ["contrct"]}), NAMES)


def test_a_rule_on_a_dropped_pii_column_is_refused():
    with pytest.raises(ConfigError, match=r"dropped by data\.pii\.email"):
        check_columns(data_config(pii={"email": "drop"}, validation={"not_null": ["email"]}),
                      NAMES)
    # a retrain reads the protected snapshot, where the dropped column is gone
    check_columns(data_config(pii={"email": "drop"}), [n for n in NAMES if n != "email"],
                  protected=True)


def test_hashed_or_generalized_pii_cannot_be_numeric():
    with pytest.raises(ConfigError, match=r"declare it in data\.categorical"):
        check_columns(data_config(pii={"birth_year": "generalize"}, numeric=["birth_year"]),
                      NAMES)


@pytest.mark.parametrize("key", ["clip", "ranges"])
def test_min_above_max_is_a_config_error(key):
    rule = {"tenure": {"min": 10, "max": 1}}
    data = {"clip": rule} if key == "clip" else {"validation": {"ranges": rule}}
    with pytest.raises(ConfigError, match=r"min 10\.0 is greater than max 1\.0"):
        data_config(**data)


def test_inference_keeps_ids_pii_timestamps_and_null_columns_out():
    schema = {"customer_id": "string", "tenure": "int64", "amount": "decimal128(10, 2)",
              "signed_up": "timestamp[us]", "empty": "null", "contract": "large_string",
              "churn": "string", "email": "string", "flag": "bool", "tags": "list<item: string>"}
    numeric, categorical, excluded, _ = infer_feature_types(
        schema, data_config(id_column="customer_id", pii={"email": "hash"}))
    assert numeric == ["tenure", "amount"]  # decimal (PostgreSQL NUMERIC) is a number
    assert categorical == ["contract", "flag"]
    assert set(excluded) == {"customer_id", "signed_up", "empty", "churn", "email", "tags"}
    assert "timestamp" in excluded["signed_up"] and "PII" in excluded["email"]


def test_a_named_timestamp_is_a_feature():
    schema = {"signed_up": "timestamp[us]", "churn": "string"}
    numeric, _, _, timestamps = infer_feature_types(schema, data_config(numeric=["signed_up"]))
    assert numeric == ["signed_up"] and timestamps == {"signed_up"}


def test_a_column_unique_on_nearly_every_row_is_an_identifier():
    frame = pd.DataFrame({"email": [f"u{i}@x.io" for i in range(100)],
                          "plan": ["a", "b"] * 50})
    merged = merge_stats([PartialStats([], ["email", "plan"], cap=10)(frame)["stats"].iloc[0]],
                         [], ["email", "plan"])
    kept, dropped = drop_identifiers(["email", "plan"], merged, data_config())
    assert kept == ["plan"] and "identifier" in dropped["email"]
    kept, _ = drop_identifiers(["email"], merged, data_config(categorical=["email"]))
    assert kept == ["email"]  # declared: the user's choice


@pytest.mark.parametrize("bad", ["../x", "a b", "x'; drop", "", "-x", "a" * 65, "a..b"])
def test_unsafe_run_ids_are_refused(bad):
    with pytest.raises(ConfigError, match="--run-id"):
        check_run_id(bad)


def test_safe_run_ids_pass():
    assert check_run_id("20261201-120000-ab12cd") == "20261201-120000-ab12cd"
