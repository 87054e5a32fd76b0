from __future__ import annotations

import numpy as np
import pandas as pd

from raymlops.config import SplitConfig
from raymlops.data.features import UNKNOWN, FittedFeatures, SplitAssigner, fit_frames

FRAME = pd.DataFrame({
    "income": [10.0, 20.0, None, 30.0],
    "age": [20.0, 30.0, 40.0, 50.0],
    "purpose": ["car", "car", "medical", None],
})


def test_fit_in_batches_equals_fit_in_one_batch():
    whole = fit_frames([FRAME], ["income", "age"], ["purpose"])
    parts = fit_frames([FRAME.iloc[:1], FRAME.iloc[1:3], FRAME.iloc[3:]], ["income", "age"],
                       ["purpose"])
    assert whole == parts
    assert whole.means["income"] == 20.0
    assert np.isclose(whole.scales["age"], np.std([20, 30, 40, 50]))
    assert whole.indicators == ["income"]
    assert whole.vocab["purpose"] == ["car", "__missing__", "medical"]


def test_transform_imputes_scales_and_buckets_unknowns():
    fitted = fit_frames([FRAME], ["income", "age"], ["purpose"])
    rows = pd.DataFrame({"income": [None], "age": [35.0], "purpose": ["boat"], "other": [1]})
    vector = fitted.transform_frame(rows).iloc[0]
    assert vector["income"] == 0.0  # imputed with the mean, then standardised
    assert vector["income__missing"] == 1.0
    assert vector[f"purpose={UNKNOWN}"] == 1.0
    assert vector[["purpose=car", "purpose=medical", "purpose=__missing__"]].sum() == 0.0
    assert len(fitted.feature_names) == fitted.transform(rows).shape[1]


def test_json_round_trip_keeps_the_transformation():
    fitted = fit_frames([FRAME], ["income", "age"], ["purpose"])
    again = FittedFeatures.from_json(fitted.to_json())
    assert again == fitted
    np.testing.assert_array_equal(again.transform(FRAME), fitted.transform(FRAME))


def test_split_is_stable_per_id_whatever_the_batching():
    ids = pd.DataFrame({"id": [f"u{i}" for i in range(3000)], "x": range(3000)})
    assign = SplitAssigner(SplitConfig(test_fraction=0.2, valid_fraction=0.1), "id", [])
    whole = assign(ids)["_split"]
    pieces = pd.concat([assign(ids.iloc[i:i + 700]) for i in range(0, 3000, 700)])["_split"]
    assert whole.tolist() == pieces.tolist()
    shares = whole.value_counts(normalize=True)
    assert 0.17 < shares["test"] < 0.23 and 0.08 < shares["valid"] < 0.12


def test_generalized_pii_columns_are_generalized_again_at_serving():
    from raymlops.data.privacy import generalize

    train = pd.DataFrame({"birth_year": generalize(pd.Series([1961, 1975, 1978, 1990]))})
    fitted = fit_frames([train], [], ["birth_year"])
    fitted.generalized = ["birth_year"]
    raw_request = pd.DataFrame({"birth_year": [1977]})
    already = pd.DataFrame({"birth_year": ["1970-1979"]})
    vector = fitted.transform_frame(raw_request).iloc[0]
    assert vector["birth_year=1970-1979"] == 1.0 and vector[f"birth_year={UNKNOWN}"] == 0.0
    np.testing.assert_array_equal(fitted.transform(raw_request), fitted.transform(already))


def test_generalize_is_idempotent():
    from raymlops.data.privacy import generalize_value

    for raw in (1977, "1977", "ana@example.com", "Zoe", -3):
        once = generalize_value(raw)
        assert generalize_value(once) == once
    assert generalize_value("ana@example.com") == "*@example.com"
    assert generalize_value(-3) == "-10--1"


def test_optional_clipping_bounds_values_before_scaling():
    frame = pd.DataFrame({"income": [10.0, 20.0, 30.0, 1000.0]})
    fitted = fit_frames([frame], ["income"], [], clip={"income": [None, 40.0]})
    assert fitted.means["income"] == 25.0  # fitted on the clipped values
    outlier = fitted.transform(pd.DataFrame({"income": [5000.0]}))[0, 0]
    at_bound = fitted.transform(pd.DataFrame({"income": [40.0]}))[0, 0]
    assert outlier == at_bound
    assert FittedFeatures.from_json(fitted.to_json()).clip == {"income": [None, 40.0]}


def test_missing_categories_encode_alike_whatever_the_column_dtype():
    """None in an Arrow-backed string column, NaN in an object column and pd.NA in a
    string column are all the same missing value (train/serve skew otherwise)."""
    import pyarrow as pa

    from raymlops.data.features import MISSING, fit_frames

    fitted = fit_frames([pd.DataFrame({"c": ["a", "b", None, "a"]})], [], ["c"])
    assert MISSING in fitted.vocab["c"]
    frames = [
        pd.DataFrame({"c": pd.Series(["a", None], dtype=pd.ArrowDtype(pa.large_string()))}),
        pd.DataFrame({"c": pd.Series(["a", float("nan")], dtype=object)}),
        pd.DataFrame({"c": pd.Series(["a", pd.NA], dtype="string")}),
    ]
    codes = [fitted.encode(f)[1][:, 0].tolist() for f in frames]
    assert codes[0] == codes[1] == codes[2]
    assert codes[0][1] == fitted.vocab["c"].index(MISSING)
