"""The Open Inference Protocol's JSON infer body: tensors by name to rows, errors by name."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raymlops.features.normalize import RowSpec
from raymlops.serving.oip import infer_response, parse_infer
from raymlops.serving.protocol import BadRequest, raise_problems

COLS = ["age", "purpose"]
SPEC = RowSpec(numeric=["age"], categorical=["purpose"])


def infer(*tensors) -> bytes:
    return json.dumps({"inputs": list(tensors)}).encode()


def tensor(name, data, datatype="FP64", shape=None):
    return {"name": name, "datatype": datatype, "shape": shape or [len(data)], "data": data}


def test_one_tensor_per_column_gives_the_rows():
    frame, _ = parse_infer(infer(tensor("age", [30, "41"]),
                                 tensor("purpose", ["car", " medical"], "BYTES")), COLS)
    out = SPEC.normalize(frame, protect=True)
    assert out.problems == []
    assert out.frame.to_dict("records") == [{"age": 30.0, "purpose": "car"},
                                            {"age": 41.0, "purpose": "medical"}]
    frame, _ = parse_infer(infer(tensor("age", [[30], [41]], shape=[2, 1]),
                                 tensor("purpose", [["a"], ["b"]], "BYTES", [2, 1])), COLS)
    assert len(frame) == 2


@pytest.mark.parametrize(("body", "field"), [
    (b"", "body"), (b"[]", "inputs"), (infer(tensor("age", [1])), "inputs.purpose"),
    (infer(tensor("age", [1], "FLOAT"), tensor("purpose", ["a"], "BYTES")), "inputs.age.datatype"),
    (infer(tensor("age", [1, 2], shape=[3]), tensor("purpose", ["a"], "BYTES")),
     "inputs.age.shape"),
    (infer(tensor("age", [1]), tensor("age", [2]), tensor("purpose", ["a"], "BYTES")),
     "inputs.age"),
    (infer(tensor("age", [1, 2]), tensor("purpose", ["a"], "BYTES")), "inputs"),
    (infer({"data": [1]}), "inputs[0]"),
])
def test_bad_infer_requests_name_the_tensor(body, field):
    with pytest.raises(BadRequest) as err:
        parse_infer(body, COLS)
    assert err.value.field == field and err.value.status == 400


def test_a_bad_value_is_named_like_in_the_mlflow_protocol():
    frame, _ = parse_infer(infer(tensor("age", [True]), tensor("purpose", ["a"], "BYTES")), COLS)
    with pytest.raises(BadRequest) as err:
        raise_problems(SPEC.normalize(frame, protect=True), frame)
    assert err.value.field == "age"


def test_the_response_names_the_version():
    answer = infer_response("m", "3", "r1", [0.5])
    assert answer["model_version"] == "3" and answer["outputs"][0]["shape"] == [1]


_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                     st.text(max_size=5))


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.fixed_dictionaries({
    "name": st.sampled_from([*COLS, "x"]),
    "datatype": st.sampled_from(["FP64", "BYTES", "INT64", "nope"]),
    "shape": st.one_of(st.lists(st.integers(-1, 3), max_size=3), _scalars),
    "data": st.one_of(st.lists(st.one_of(_scalars, st.lists(_scalars, max_size=2)),
                               max_size=3), _scalars)}), max_size=3))
def test_fuzzed_infer_requests_only_ever_raise_bad_request(tensors):
    try:
        frame, _ = parse_infer(json.dumps({"inputs": tensors}).encode(), COLS)
        raise_problems(SPEC.normalize(frame, protect=True), frame)
    except BadRequest as err:
        assert 400 <= err.status < 500 and err.field
