from __future__ import annotations

import json

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raymlops.features.normalize import RowSpec
from raymlops.serving.protocol import BadRequest, parse_body, raise_problems, require_columns

COLS = ["age", "purpose"]
SPEC = RowSpec(numeric=["age"], categorical=["purpose"])


def body(payload) -> bytes:
    return json.dumps(payload).encode()


def score(raw: bytes, ctype: str | None = "application/json") -> pd.DataFrame:
    """What a replica does with a body: parse, check columns, normalize, name the problem."""
    frame = parse_body(raw, ctype, COLS)
    require_columns(frame, COLS)
    normalized = SPEC.normalize(frame, protect=True)
    raise_problems(normalized, frame)
    return normalized.frame


@pytest.mark.parametrize("payload", [
    {"dataframe_split": {"columns": COLS, "data": [[30, "car"], [41, "medical"]]}},
    {"dataframe_records": [{"age": 30, "purpose": "car"}, {"age": 41, "purpose": "medical"}]},
    {"instances": [{"age": 30, "purpose": "car"}, {"age": 41, "purpose": "medical"}]},
    {"inputs": {"age": [30, 41], "purpose": ["car", "medical"]}},
    {"inputs": [[30, "car"], [41, "medical"]]},
    {"dataframe_split": {"columns": COLS, "data": [[30, "car"], [41, "medical"]]},
     "params": {}},
])
def test_every_mlflow_json_format_gives_the_same_inputs(payload):
    frame = score(body(payload))
    assert list(frame[COLS].itertuples(index=False, name=None)) == [(30.0, "car"),
                                                                   (41.0, "medical")]


def test_csv_body_is_read_as_text_and_normalized():
    frame = score(b"age,purpose\n30, car\n,\n", "text/csv; charset=utf-8")
    assert frame["age"].tolist()[0] == 30.0 and pd.isna(frame["age"].tolist()[1])
    assert frame["purpose"].tolist() == ["car", None]


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
    (body({"dataframe_split": {"columns": ["age", "age"], "data": [[1, 2]]}}), None,
     "dataframe_split.columns", 400),
    (b'{"dataframe_records": [{"age": 1, "age": 2, "purpose": "a"}]}', None, "age", 400),
    (b"age,age,purpose\n1,2,a\n", "text/csv", "age", 400),
    (body({"dataframe_records": [{"age": 1, "purpose": "a"}, 5]}), None,
     "dataframe_records[1]", 400),
    (body({"inputs": [[1]]}), None, "inputs[0]", 400),
    (body({"dataframe_records": []}), None, "body", 400),
    (b'{"dataframe_records": [{"age": NaN, "purpose": "a"}]}', None, "body", 400),
    (b'{"dataframe_records": [{"age": Infinity, "purpose": "a"}]}', None, "body", 400),
    (b'{"dataframe_records": [{"age": 1e400, "purpose": "a"}]}', None, "age", 400),
    (b'{"dataframe_records": [{"age": ' + b"9" * 400 + b', "purpose": "a"}]}', None, "age",
     400),
    (body({"dataframe_records": [{"age": True, "purpose": "a"}]}), None, "age", 400),
    (body({"dataframe_records": [{"age": 1, "purpose": ["a"]}]}), None, "purpose", 400),
    (body({"dataframe_records": [{"age": 1, "purpose": "a"}], "params": 3}), None, "params",
     400),
    (b"<xml/>", "application/xml", "content-type", 415),
])
def test_bad_bodies_name_the_field(raw, ctype, field, status):
    with pytest.raises(BadRequest) as err:
        score(raw, ctype)
    assert err.value.field == field
    assert err.value.status == status
    assert err.value.to_json()["field"] == field


def test_a_record_that_lacks_or_misspells_a_column_is_named_with_its_row():
    records = [{"age": 30, "purpose": "car"}, {"age": 31, "purpose": "car"},
               {"agee": 32, "purpose": "car"}]
    with pytest.raises(BadRequest) as err:
        score(body({"dataframe_records": records}))
    assert err.value.field == "age" and err.value.row == 2
    assert "dataframe_records[2]" in err.value.message and "'agee'" in err.value.message
    assert err.value.to_json()["row"] == 2


def test_the_first_bad_value_is_named_with_its_row():
    records = [{"age": 30, "purpose": "car"}, {"age": "old", "purpose": "car"}]
    with pytest.raises(BadRequest) as err:
        score(body({"dataframe_records": records}))
    assert err.value.field == "age" and "'old'" in err.value.message
    assert err.value.row == 1


def test_too_many_rows_is_413():
    payload = {"inputs": {"age": list(range(10_001)), "purpose": ["x"] * 10_001}}
    with pytest.raises(BadRequest) as err:
        parse_body(body(payload), None, COLS)
    assert err.value.status == 413


# -- fuzzing: every malformed body is a 4xx that names a field ---------------------------

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
    st.integers(min_value=10**308, max_value=10**400), st.floats(allow_nan=False),
    st.text(max_size=8), st.sampled_from(["", " ", "1e400", "inf", "NaN", "2.0", "car"]))
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from([*COLS, "x", "data"]),
                                                 inner, max_size=3)), max_leaves=6)
_records = st.lists(st.dictionaries(st.sampled_from([*COLS, "agee", "zzz"]), _values,
                                    max_size=4), max_size=4)
_payloads = st.one_of(
    st.fixed_dictionaries({"dataframe_records": st.one_of(_records, _values)}),
    st.fixed_dictionaries({"instances": st.one_of(_records, _values)}),
    st.fixed_dictionaries({"inputs": _values}),
    st.fixed_dictionaries({"dataframe_split": st.fixed_dictionaries({
        "columns": st.one_of(st.just(COLS), st.lists(st.sampled_from([*COLS, "x"]), max_size=3),
                             _values),
        "data": st.one_of(st.lists(st.lists(_values, max_size=3), max_size=3), _values)})}),
    st.dictionaries(st.text(max_size=5), _values, max_size=3), _values)
_raw_tokens = st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e400", b"9" * 330,
                               b"true", b'"2"', b"null", b"[]", b"{}"])


def _check(raw: bytes, ctype: str | None) -> None:
    try:
        score(raw, ctype)
    except BadRequest as err:
        assert 400 <= err.status < 500 and err.field
        assert json.dumps(err.to_json())  # serializable as the response body


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_payloads)
def test_fuzzed_json_bodies_only_ever_raise_bad_request(payload):
    _check(json.dumps(payload).encode(), "application/json")


@settings(max_examples=1000, deadline=None)
@given(_raw_tokens, _raw_tokens, st.sampled_from(["dataframe_records", "instances", "inputs"]))
def test_fuzzed_number_tokens_only_ever_raise_bad_request(age, purpose, key):
    raw = b'{"' + key.encode() + b'": [{"age": ' + age + b', "purpose": ' + purpose + b"}]}"
    _check(raw, "application/json")


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64), st.sampled_from(["text/csv", "application/json", None]))
def test_fuzzed_bytes_only_ever_raise_bad_request(raw, ctype):
    _check(raw, ctype)


# -- the same with PII and timestamp inputs: generalize, keyed hash, epoch seconds -------

PII_COLS = ["age", "t", "purpose", "by", "acct"]
PII_SPEC = RowSpec(numeric=["age", "t"], categorical=["purpose", "by", "acct"],
                   pii={"by": "generalize", "acct": "hash"}, datetime=["t"])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.fixed_dictionaries(dict.fromkeys(PII_COLS, _values)), min_size=1, max_size=3),
       st.sampled_from(["dataframe_records", "instances"]))
def test_fuzzed_pii_and_timestamp_inputs_only_ever_raise_bad_request(records, key):
    """generalize on a 400-digit integer raised OverflowError (a 500) before."""
    raw = json.dumps({key: records}).encode()
    try:
        frame = parse_body(raw, "application/json", PII_COLS)
        require_columns(frame, PII_COLS)
        normalized = PII_SPEC.normalize(frame, protect=True, key=b"k")
        raise_problems(normalized, frame)
    except BadRequest as err:
        assert 400 <= err.status < 500 and err.field


def test_a_400_digit_birth_year_is_generalized_not_a_crash():
    raw = body({"dataframe_records": [{"age": 1, "t": "2024-01-01", "purpose": "a",
                                       "by": 10**400, "acct": "x"}]})
    frame = parse_body(raw, "application/json", PII_COLS)
    out = PII_SPEC.normalize(frame, protect=True, key=b"k").frame
    assert out["by"].tolist() == ["1e400-1e401"] and out["t"].tolist() == [1704067200.0]


def test_params_output_is_read_with_the_rows_in_one_parse():
    from raymlops.serving.protocol import parse_request

    rows = {"dataframe_records": [{"age": 30, "purpose": "car"}]}
    frame, output = parse_request(json.dumps({**rows, "params": {"output": "decision"}})
                                  .encode(), "application/json", COLS)
    assert output == "decision" and len(frame) == 1
    assert parse_request(json.dumps(rows).encode(), None, COLS)[1] == "score"
    assert parse_request(b"age,purpose\n30,car\n", "text/csv", COLS)[1] == "score"
    for params, field in (({"output": "x"}, "params.output"), ({"top_k": 3}, "params.top_k")):
        with pytest.raises(BadRequest) as err:
            parse_request(json.dumps({**rows, "params": params}).encode(), None, COLS)
        assert err.value.field == field and err.value.status == 400
