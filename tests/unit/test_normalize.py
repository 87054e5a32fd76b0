"""The one row normalization: the same raw value gives the same input on every path."""

from __future__ import annotations

import decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from raymlops.features.normalize import RowSpec, canonical_categories, canonical_text
from raymlops.features.pii import Protector, generalize_value, hash_value

SPEC = RowSpec(numeric=["x"], categorical=["region"])


@pytest.mark.parametrize("value", [2, 2.0, "2", "2.0", " 2 ", np.int64(2), np.float32(2.0),
                                   decimal.Decimal("2.00")])
def test_numeric_coded_categories_have_one_canonical_text(value):
    assert canonical_text(value) == "2"


@pytest.mark.parametrize(("value", "expected"), [
    (" basic", "basic"), ("", None), ("   ", None), (None, None), (float("nan"), None),
    (pd.NA, None), ("007", "007"), ("2.50", "2.5"), (True, "true"), ("TRUE", "true"),
    ("Yes", "Yes"), ("1e3", "1000"), (-0.0, "0"),
])
def test_canonical_text(value, expected):
    assert canonical_text(value) == expected


def test_vectorized_and_scalar_canonical_texts_agree_for_every_dtype():
    values = ["2.0", " 2", "basic ", "", None, "007", "True", "1.5"]
    expected = [canonical_text(v) for v in values]
    for dtype in (object, "string", pd.ArrowDtype(pa.large_string())):
        got, _ = canonical_categories(pd.Series(values, dtype=dtype))
        assert list(got) == expected, dtype
    floats, _ = canonical_categories(pd.Series([2.0, np.nan, 3.5]))
    assert list(floats) == ["2", None, "3.5"]
    ints, _ = canonical_categories(pd.Series([2, 3], dtype="int64"))
    assert list(ints) == ["2", "3"]


def test_numbers_from_every_shape_of_input():
    frame = pd.DataFrame({
        "x": pd.Series([1, "2", " 3.5 ", "", None, "NA", decimal.Decimal("4.25")], dtype=object),
        "region": ["a"] * 7})
    out = SPEC.normalize(frame, protect=False)
    assert out.problems == []
    np.testing.assert_array_equal(out.frame["x"].to_numpy(),
                                  [1.0, 2.0, 3.5, np.nan, np.nan, np.nan, 4.25])


@pytest.mark.parametrize(("value", "kind"), [
    (True, "boolean"), (float("inf"), "not_finite"), ("1e400", "not_finite"),
    (10**400, "out_of_range"), ("a lot", "not_a_number"), ([1], "not_scalar"),
    ("1_000", "not_a_number"), ("inf", "not_a_number"),
])
def test_values_that_are_not_numbers_are_problems_with_a_kind(value, kind):
    frame = pd.DataFrame({"x": pd.Series([1.0, value], dtype=object), "region": ["a", "b"]})
    out = SPEC.normalize(frame, protect=False)
    assert [(p.column, p.kind, p.first_row()) for p in out.problems] == [("x", kind, 1)]
    assert "x" in out.problems[0].reason()


def test_boolean_and_nonfinite_dtypes_are_problems_too():
    frame = pd.DataFrame({"x": [True, False], "region": ["a", "b"]})
    assert [p.kind for p in SPEC.normalize(frame, protect=False).problems] == ["boolean"]
    frame = pd.DataFrame({"x": [1.0, np.inf], "region": ["a", "b"]})
    assert [p.kind for p in SPEC.normalize(frame, protect=False).problems] == ["not_finite"]


def test_normalizing_twice_changes_nothing():
    spec = RowSpec(numeric=["x"], categorical=["region", "by"], pii={"by": "generalize"})
    frame = pd.DataFrame({"x": ["1", " 2.5", ""], "region": [2.0, " north", ""],
                          "by": [1975, "2024-05", None]})
    once = spec.normalize(frame, protect=True).frame
    twice = spec.normalize(once, protect=False).frame
    pd.testing.assert_frame_equal(once, twice)
    assert once["by"].tolist() == ["1970-1979", "2020-2029", None]


# -- PII ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "bucket"), [
    ("555-1234", "5*"), ("0612-345678", "0*"), ("2024-05", "2020-2029"),
    ("2024-05-17T10:00:00", "2020-2029"), (pd.Timestamp("1999-12-31"), "1990-1999"),
    ("4111111111111111", "1e15-1e16"), (4111111111111111, "1e15-1e16"),
    ("4111-1111-1111-1111", "4*"), ("+44 7123 456789", "+*"), ("123-45-6789", "1*"),
    ("AB123456C", "A*"), ("ana@Example.com", "*@example.com"), (1975, "1970-1979"),
    ("1975", "1970-1979"), (-3, "-10--1"), (52000, "1e4-1e5"),
])
def test_generalize_never_reveals_more_than_a_coarse_bucket(raw, bucket):
    assert generalize_value(raw) == bucket
    assert generalize_value(bucket) == bucket  # idempotent: its own outputs stay


@pytest.mark.parametrize(("make", "most"), [
    (lambda r: str(r.integers(4 * 10**15, 5 * 10**15)), 1),                 # card numbers
    (lambda r: f"+44 7{r.integers(10**8, 10**9)}", 1),                      # phone numbers
    (lambda r: f"{r.integers(100, 999)}-{r.integers(10, 99)}-{r.integers(1000, 9999)}", 9),
    (lambda r: f"{r.integers(2020, 2030)}-{r.integers(1, 13):02d}-{r.integers(1, 29):02d}", 1),
    (lambda r: f"user{r.integers(10**6)}@corp.example", 1),                 # e-mail addresses
])
def test_generalize_maps_many_raw_values_to_a_few_buckets(make, most):
    """Coarse means many people share a bucket: 500 distinct raw values, at most 9 buckets."""
    rng = np.random.default_rng(0)
    raw = {make(rng) for _ in range(500)}
    buckets = {generalize_value(v) for v in raw}
    assert len(raw) > 400 and len(buckets) <= most, buckets
    for bucket in buckets:
        assert bucket not in raw


@pytest.mark.parametrize("missing", [None, float("nan"), pd.NA, "", "  "])
def test_missing_pii_values_stay_missing(missing):
    key = b"k"
    assert hash_value(key, missing) is None
    assert generalize_value(missing) is None
    batch = pd.DataFrame({"email": pd.Series(["a@x.io", missing], dtype=object),
                          "phone": ["1", "2"], "by": [1970, None]})
    out = Protector({"email": "hash", "phone": "drop", "by": "generalize"}, key)(batch)
    assert "phone" not in out.columns
    assert out["email"].isna().tolist() == [False, True]
    assert out["by"].isna().tolist() == [False, True]


def test_arrow_backed_missing_values_are_not_hashed_as_text():
    """pd.NA from Arrow-backed batches used to be hashed as the text '<NA>'."""
    series = pd.Series(["a@x.io", None, None], dtype=pd.ArrowDtype(pa.large_string()))
    out = Protector({"email": "hash"}, b"k")(pd.DataFrame({"email": series}))
    assert out["email"].isna().tolist() == [False, True, True]


def test_hash_is_of_the_canonical_text():
    key = b"k"
    assert hash_value(key, " C-1 ") == hash_value(key, "C-1")
    assert hash_value(key, 7) == hash_value(key, "7.0") == hash_value(key, 7.0)
    assert hash_value(key, "C-1") != hash_value(b"other", "C-1")


def test_integer_categories_stay_exact_with_holes_and_any_width():
    big = 2**53 + 1
    for series in (pd.Series([big, None], dtype="Int64"),
                   pd.Series([big, None], dtype=pd.ArrowDtype(pa.int64())),
                   pd.Series([2**64 - 1], dtype="uint64"), pd.Series([big], dtype="int64")):
        got, _ = canonical_categories(series)
        assert got[0] == canonical_text(series.iloc[0]) == str(int(series.iloc[0]))


def test_timestamps_are_epoch_seconds_whatever_the_unit_or_form():
    spec = RowSpec(numeric=["t"], categorical=[], datetime=["t"])
    arrow = pa.array([1704067200, None], type=pa.timestamp("s")).to_pandas()
    from_csv = spec.normalize(pd.DataFrame({"t": arrow}), protect=False).frame["t"]
    from_json = spec.normalize(pd.DataFrame({"t": pd.Series(
        ["2024-01-01T00:00:00Z", ""], dtype=object)}), protect=False)
    as_number = spec.normalize(pd.DataFrame({"t": [1704067200, None]}), protect=False)
    assert from_csv[0] == from_json.frame["t"][0] == as_number.frame["t"][0] == 1704067200.0
    assert np.isnan(from_json.frame["t"][1]) and from_json.problems == []
    bad = spec.normalize(pd.DataFrame({"t": ["not a date"]}), protect=False)
    assert [p.kind for p in bad.problems] == ["not_a_number"]


def test_a_huge_integer_in_a_generalized_column_is_a_bucket_not_an_error():
    assert generalize_value(10**400) == "1e400-1e401"
    assert generalize_value("9" * 400) == "1e399-1e400"
