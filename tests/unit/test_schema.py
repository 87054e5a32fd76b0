from __future__ import annotations

from pathlib import Path

from raymlops.config import load_config
from raymlops.data.demo_churn import make_churn_table
from raymlops.data.schema import ExpectedSchema, compare, infer_schema, type_family

CHURN = load_config(Path(__file__).resolve().parents[2] / "configs" / "churn.yaml").data


def test_type_families_group_arrow_and_pandas_names():
    assert {type_family(t) for t in ("int64", "double", "float64", "uint8")} == {"number"}
    assert {type_family(t) for t in ("string", "large_string", "object", "str")} == {"string"}
    assert type_family("bool") == "bool"


def test_inferred_schema_has_labels_and_category_sets(tmp_path):
    schema = infer_schema(make_churn_table(500, seed=1), CHURN)
    assert schema.labels == ["No", "Yes"]
    assert schema.columns["tenure_months"] == "number"
    assert schema.columns["total_charges"] == "string"  # numbers stored as text
    assert schema.categories["contract"] == ["Month-to-month", "One year", "Two year"]
    assert "customer_id" not in schema.categories and "phone" not in schema.categories
    again = ExpectedSchema.load(schema.save(tmp_path / "s.json"))
    assert again == schema


def test_compare_finds_a_renamed_column_and_a_type_change():
    frame = make_churn_table(200, seed=2)
    schema = infer_schema(frame, CHURN)
    actual = {c: str(t) for c, t in frame.dtypes.items()}
    assert compare(schema, actual) == []
    renamed = {("monthly_charge" if c == "monthly_charges" else c): t for c, t in actual.items()}
    problems = compare(schema, renamed)
    assert len(problems) == 1 and "['monthly_charges'] are missing" in problems[0]
    assert "monthly_charge" in problems[0]
    retyped = {**actual, "tenure_months": "string"}
    assert compare(schema, retyped) == [
        "schema: column 'tenure_months' is string, expected number"]


def test_compare_ignores_columns_that_pii_handling_changes():
    frame = make_churn_table(200, seed=3)
    schema = infer_schema(frame, CHURN)
    after_ingest = {c: str(t) for c, t in frame.dtypes.items() if c != "phone"}
    after_ingest["birth_year"] = "string"  # generalized to decades
    assert compare(schema, after_ingest, ignore=set(CHURN.pii)) == []
    assert compare(schema, after_ingest) != []


def test_unknown_schema_file_names_the_key(tmp_path):
    import pytest

    from raymlops.errors import ConfigError

    with pytest.raises(ConfigError, match=r"data\.validation\.schema"):
        ExpectedSchema.load(tmp_path / "missing.json")


def test_schema_of_an_all_null_column_does_not_block():
    schema = ExpectedSchema(columns={"a": "number"})
    assert compare(schema, {"a": "null"}) == []
