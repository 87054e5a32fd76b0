from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from raymlops.config import SplitConfig
from raymlops.data.preprocess import SplitAssigner
from raymlops.features import MISSING, UNKNOWN, FittedFeatures, RowSpec, fit_frames
from raymlops.features.fitted import feature_names
from raymlops.features.stats import Moments

FRAME = pd.DataFrame({
    "income": [10.0, 20.0, None, 30.0],
    "age": [20.0, 30.0, 40.0, 50.0],
    "purpose": ["car", "car", "medical", None],
})
SPEC = RowSpec(numeric=["income", "age"], categorical=["purpose"])


def test_fit_in_batches_equals_fit_in_one_batch():
    whole = fit_frames([FRAME], SPEC)
    parts = fit_frames([FRAME.iloc[:1], FRAME.iloc[1:3], FRAME.iloc[3:]], SPEC)
    assert whole.means == pytest.approx(parts.means)
    assert whole.scales == pytest.approx(parts.scales)
    assert whole.vocab == parts.vocab and whole.indicators == parts.indicators
    assert whole.means["income"] == 20.0
    assert np.isclose(whole.scales["age"], np.std([20, 30, 40, 50]))
    assert whole.indicators == ["income"]
    assert whole.vocab["purpose"] == ["car", MISSING, "medical"]


def test_scale_is_numerically_stable_for_large_values():
    """sum(x^2)/n - mean^2 cancels for 1.7e9 +- 2.0 (it gave a scale of 1)."""
    values = 1.7e9 + np.array([-2.0, 2.0] * 500)
    spec = RowSpec(numeric=["x"], categorical=[])
    frames = [pd.DataFrame({"x": chunk}) for chunk in np.array_split(values, 7)]
    fitted = fit_frames(frames, spec)
    assert fitted.scales["x"] == pytest.approx(2.0, rel=1e-9)
    assert fitted.means["x"] == pytest.approx(1.7e9, rel=1e-15)
    merged = Moments()
    for chunk in np.array_split(values, 13):
        merged = merged.merge(Moments.of(chunk))
    assert merged.variance == pytest.approx(4.0, rel=1e-9)


def test_transform_imputes_scales_and_buckets_unknowns():
    fitted = fit_frames([FRAME], SPEC)
    rows = pd.DataFrame({"income": [None], "age": [35.0], "purpose": ["boat"], "other": [1]})
    vector = fitted.transform_frame(rows, raw=True).iloc[0]
    assert vector["income"] == 0.0  # imputed with the mean, then standardised
    assert vector["income__missing"] == 1.0
    assert vector[f"purpose={UNKNOWN}"] == 1.0
    assert vector[["purpose=car", "purpose=medical", "purpose=__missing__"]].sum() == 0.0
    assert len(fitted.feature_names) == fitted.transform(rows, raw=True).shape[1]


def test_json_round_trip_keeps_the_transformation():
    fitted = fit_frames([FRAME], SPEC)
    again = FittedFeatures.from_json(fitted.to_json())
    assert again == fitted
    np.testing.assert_array_equal(again.transform(FRAME, raw=True),
                                  fitted.transform(FRAME, raw=True))


def test_features_json_written_before_the_row_spec_still_loads():
    old = ('{"numeric": ["age"], "categorical": ["birth_year"], "means": {"age": 1.0}, '
           '"scales": {"age": 2.0}, "indicators": [], "vocab": {"birth_year": ["1970-1979"]}, '
           '"generalized": ["birth_year"], "clip": {}}')
    fitted = FittedFeatures.from_json(old)
    assert fitted.spec.pii == {"birth_year": "generalize"}
    vector = fitted.transform_frame(pd.DataFrame({"age": [3.0], "birth_year": [1975]}),
                                    raw=True).iloc[0]
    assert vector["birth_year=1970-1979"] == 1.0 and vector["age"] == 1.0


def test_split_is_stable_per_id_whatever_the_batching():
    ids = pd.DataFrame({"id": [f"u{i}" for i in range(3000)], "x": range(3000)})
    assign = SplitAssigner(SplitConfig(test_fraction=0.2, valid_fraction=0.1), "id", [])
    whole = assign(ids)["_split"]
    pieces = pd.concat([assign(ids.iloc[i:i + 700]) for i in range(0, 3000, 700)])["_split"]
    assert whole.tolist() == pieces.tolist()
    shares = whole.value_counts(normalize=True)
    assert 0.17 < shares["test"] < 0.23 and 0.08 < shares["valid"] < 0.12


def test_generalized_pii_columns_are_generalized_again_at_serving():
    from raymlops.features.pii import generalize_value

    spec = RowSpec(numeric=[], categorical=["birth_year"], pii={"birth_year": "generalize"})
    train = pd.DataFrame({"birth_year": [generalize_value(v) for v in (1961, 1975, 1978, 1990)]})
    fitted = fit_frames([train], spec)
    raw_request = pd.DataFrame({"birth_year": [1977]})
    already = pd.DataFrame({"birth_year": ["1970-1979"]})
    vector = fitted.transform_frame(raw_request, raw=True).iloc[0]
    assert vector["birth_year=1970-1979"] == 1.0 and vector[f"birth_year={UNKNOWN}"] == 0.0
    np.testing.assert_array_equal(fitted.transform(raw_request, raw=True),
                                  fitted.transform(already, raw=True))


def test_hashed_pii_feature_is_hashed_at_serving_with_the_same_key():
    """Training saw the hash; a raw request must too (it used to land in the unknown bucket)."""
    from raymlops.features.pii import Protector, key_id

    key = b"k" * 32
    raw = pd.DataFrame({"plan": ["gold", " gold ", "silver", "bronze"] * 5})
    protected = Protector({"plan": "hash"}, key)(raw)
    spec = RowSpec(numeric=[], categorical=["plan"], pii={"plan": "hash"},
                   pii_key={"env": "NOPE", "id": key_id(key)})
    fitted = fit_frames([spec.normalize(protected, protect=False).frame], spec).with_key(key)
    assert "gold" not in fitted.to_json()
    codes = fitted.encode(pd.DataFrame({"plan": ["gold", "silver", "platinum"]}), raw=True)[1]
    assert codes[:, 0].tolist() == [fitted.vocab["plan"].index(protected["plan"][0]),
                                    fitted.vocab["plan"].index(protected["plan"][2]),
                                    len(fitted.vocab["plan"])]


def test_a_hashed_input_without_its_key_fails_loudly(monkeypatch):
    from raymlops.features.pii import PiiKeyError, key_id

    spec = RowSpec(numeric=[], categorical=["plan"], pii={"plan": "hash"},
                   pii_key={"env": "RAYMLOPS_TEST_KEY", "id": key_id(b"right")})
    fitted = fit_frames([pd.DataFrame({"plan": ["a"]})], spec)
    monkeypatch.setenv("RAYMLOPS_TEST_KEY", "wrong")
    with pytest.raises(PiiKeyError, match="another key"):
        fitted.encode(pd.DataFrame({"plan": ["x"]}), raw=True)
    monkeypatch.setenv("RAYMLOPS_TEST_KEY", "right")
    assert fitted.encode(pd.DataFrame({"plan": ["x"]}), raw=True)[1].shape == (1, 1)


def test_optional_clipping_bounds_values_before_scaling():
    frame = pd.DataFrame({"income": [10.0, 20.0, 30.0, 1000.0]})
    spec = RowSpec(numeric=["income"], categorical=[])
    fitted = fit_frames([frame], spec, clip={"income": [None, 40.0]})
    assert fitted.means["income"] == 25.0  # fitted on the clipped values
    outlier = fitted.transform(pd.DataFrame({"income": [5000.0]}), raw=True)[0, 0]
    at_bound = fitted.transform(pd.DataFrame({"income": [40.0]}), raw=True)[0, 0]
    assert outlier == at_bound
    assert FittedFeatures.from_json(fitted.to_json()).clip == {"income": [None, 40.0]}


def test_missing_categories_encode_alike_whatever_the_column_dtype():
    """None in an Arrow-backed string column, NaN in an object column and pd.NA in a
    string column are all the same missing value (train/serve skew otherwise)."""
    import pyarrow as pa

    spec = RowSpec(numeric=[], categorical=["c"])
    fitted = fit_frames([pd.DataFrame({"c": ["a", "b", None, "a"]})], spec)
    assert MISSING in fitted.vocab["c"]
    frames = [
        pd.DataFrame({"c": pd.Series(["a", None], dtype=pd.ArrowDtype(pa.large_string()))}),
        pd.DataFrame({"c": pd.Series(["a", float("nan")], dtype=object)}),
        pd.DataFrame({"c": pd.Series(["a", pd.NA], dtype="string")}),
        pd.DataFrame({"c": pd.Series(["a", "   "], dtype=object)}),
    ]
    codes = [fitted.encode(f, raw=True)[1][:, 0].tolist() for f in frames]
    assert codes[0] == codes[1] == codes[2] == codes[3]
    assert codes[0][1] == fitted.vocab["c"].index(MISSING)


def test_feature_names_that_sanitize_alike_stay_unique_and_traceable():
    names, sources = feature_names(["a b", "a_b"], [], {"tenure": ["<1 year", ">1 year"]},
                                   ["tenure"])
    assert len(set(names)) == len(names) == 5
    back = {(s["column"], s.get("value")) for s in sources.values()}
    assert ("tenure", "<1 year") in back and ("tenure", ">1 year") in back
    assert ("a b", None) in back and ("a_b", None) in back
    assert all("<" not in n and "[" not in n for n in names)
