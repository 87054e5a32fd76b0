from __future__ import annotations

import json

import pandas as pd
import pytest

from raymlops.serving.protocol import BadRequest, coerce_inputs, parse_body

COLS = ["age", "purpose"]


def body(payload) -> bytes:
    return json.dumps(payload).encode()


@pytest.mark.parametrize("payload", [
    {"dataframe_split": {"columns": COLS, "data": [[30, "car"], [41, "medical"]]}},
    {"dataframe_records": [{"age": 30, "purpose": "car"}, {"age": 41, "purpose": "medical"}]},
    {"instances": [{"age": 30, "purpose": "car"}, {"age": 41, "purpose": "medical"}]},
    {"inputs": {"age": [30, 41], "purpose": ["car", "medical"]}},
    {"inputs": [[30, "car"], [41, "medical"]]},
    {"dataframe_split": {"columns": COLS, "data": [[30, "car"], [41, "medical"]]},
     "params": {}},
])
def test_every_mlflow_json_format_gives_the_same_frame(payload):
    frame = parse_body(body(payload), "application/json", COLS)
    assert list(frame[COLS].itertuples(index=False, name=None)) == [(30, "car"), (41, "medical")]


def test_csv_body():
    frame = parse_body(b"age,purpose\n30,car\n", "text/csv; charset=utf-8", COLS)
    assert frame.to_dict("records") == [{"age": 30, "purpose": "car"}]


@pytest.mark.parametrize(("raw", "ctype", "field", "status"), [
    (b"", "application/json", "body", 400),
    (b"{nope", "application/json", "body", 400),
    (b"[1, 2]", "application/json", "body", 400),
    (body({"rows": []}), "application/json", "rows", 400),
    (body({}), "application/json", "body", 400),
    (body({"dataframe_split": {"columns": "age", "data": []}}), None, "dataframe_split.columns",
     400),
    (body({"dataframe_split": {"columns": COLS, "data": [[1, "a"], [2]]}}), None,
     "dataframe_split.data[1]", 400),
    (body({"dataframe_records": [{"age": 1}, 5]}), None, "dataframe_records[1]", 400),
    (body({"inputs": [[1]]}), None, "inputs[0]", 400),
    (body({"dataframe_records": []}), None, "body", 400),
    (b"<xml/>", "application/xml", "content-type", 415),
])
def test_bad_bodies_name_the_field(raw, ctype, field, status):
    with pytest.raises(BadRequest) as err:
        parse_body(raw, ctype, COLS)
    assert err.value.field == field
    assert err.value.status == status
    assert err.value.to_json()["field"] == field


def test_too_many_rows_is_413():
    payload = {"inputs": {"age": list(range(10_001)), "purpose": ["x"] * 10_001}}
    with pytest.raises(BadRequest) as err:
        parse_body(body(payload), None, COLS)
    assert err.value.status == 413


def test_coerce_inputs_checks_columns_and_types():
    frame = pd.DataFrame({"age": ["31", None], "purpose": ["car", 7], "extra": [1, 2]})
    out = coerce_inputs(frame, ["age"], ["purpose"])
    assert list(out.columns) == ["age", "purpose"]
    assert out["age"].tolist()[0] == 31.0 and pd.isna(out["age"].tolist()[1])
    assert out["purpose"].tolist() == ["car", "7"]
    with pytest.raises(BadRequest) as missing:
        coerce_inputs(frame.drop(columns=["age"]), ["age"], ["purpose"])
    assert missing.value.field == "age"
    with pytest.raises(BadRequest) as bad:
        coerce_inputs(pd.DataFrame({"age": ["old"], "purpose": ["car"]}), ["age"], ["purpose"])
    assert bad.value.field == "age" and "'old'" in bad.value.message


def test_random_bodies_only_ever_raise_bad_request():
    """A replica never crashes on input: every malformed body maps to a 4xx."""
    import random

    rng = random.Random(1)
    atoms = [None, 1, -2.5, "x", "", True, [], {}, [1, "a"], {"a": [1]}, "1e400", float("nan")]

    def value(depth: int = 0):
        if depth > 2 or rng.random() < 0.5:
            return rng.choice(atoms)
        if rng.random() < 0.5:
            return [value(depth + 1) for _ in range(rng.randint(0, 3))]
        keys = [*COLS, "dataframe_split", "columns", "data", "inputs", "zzz"]
        return {rng.choice(keys): value(depth + 1) for _ in range(rng.randint(0, 3))}

    for _ in range(3000):
        key = rng.choice(["dataframe_split", "dataframe_records", "instances", "inputs", "x"])
        payload = {key: value()} if rng.random() < 0.9 else value()
        try:
            frame = parse_body(json.dumps(payload).encode(), "application/json", COLS)
            coerce_inputs(frame, ["age"], ["purpose"])
        except BadRequest as err:
            assert 400 <= err.status < 500 and err.field
