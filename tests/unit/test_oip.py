"""The Open Inference Protocol's JSON infer body: tensors by name to rows, errors by name."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raymlops.features.normalize import RowSpec
from raymlops.serving.oip import infer_response, parse_infer, requested
from raymlops.serving.protocol import BadRequest, raise_problems

COLS = ["age", "purpose"]
SPEC = RowSpec(numeric=["age"], categorical=["purpose"])


def infer(*tensors) -> bytes:
    return json.dumps({"inputs": list(tensors)}).encode()


def tensor(name, data, datatype="FP64", shape=None):
    return {"name": name, "datatype": datatype, "shape": shape or [len(data)], "data": data}


def test_one_tensor_per_column_gives_the_rows():
    frame, _ = parse_infer(infer(tensor("age", [30, 41]),
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
    (infer({**tensor("age", [1]), "datatype": []}, tensor("purpose", ["a"], "BYTES")),
     "inputs.age.datatype"),
])
def test_bad_infer_requests_name_the_tensor(body, field):
    with pytest.raises(BadRequest) as err:
        parse_infer(body, COLS)
    assert err.value.field == field and err.value.status == 400


def test_a_bad_value_is_named_like_in_the_mlflow_protocol():
    frame, _ = parse_infer(infer(tensor("age", ["abc"], "BYTES"),
                                 tensor("purpose", ["a"], "BYTES")), COLS)
    with pytest.raises(BadRequest) as err:
        raise_problems(SPEC.normalize(frame, protect=True), frame)
    assert err.value.field == "age"
    text_number, _ = parse_infer(infer(tensor("age", ["41"], "BYTES"),
                                       tensor("purpose", ["a"], "BYTES")), COLS)
    assert SPEC.normalize(text_number, protect=True).frame["age"].tolist() == [41.0]


@pytest.mark.parametrize(("datatype", "value"), [("FP64", True), ("FP64", "41"),
                                                 ("BYTES", 3), ("BOOL", 1)])
def test_a_value_of_the_wrong_datatype_is_refused(datatype, value):
    with pytest.raises(BadRequest) as err:
        parse_infer(infer(tensor("age", [value], datatype), tensor("purpose", ["a"], "BYTES")),
                    COLS)
    assert err.value.field == "inputs.age.data"


def _binary(*tensors: tuple[str, str, list]) -> tuple[bytes, str]:
    head, blobs = [], []
    for name, datatype, values in tensors:
        if datatype == "BYTES":
            blob = b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values)
        else:
            blob = np.asarray(values, dtype="<f8").tobytes()
        head.append({"name": name, "datatype": datatype, "shape": [len(values)],
                     "parameters": {"binary_data_size": len(blob)}})
        blobs.append(blob)
    header = json.dumps({"inputs": head, "parameters": {"binary_data_output": True}}).encode()
    return header + b"".join(blobs), str(len(header))


def test_the_binary_tensor_extension_is_read():
    body, length = _binary(("age", "FP64", [30.5, 41.0]), ("purpose", "BYTES", ["car", "é"]))
    frame, payload = parse_infer(body, COLS, length)
    assert frame["age"].tolist() == [30.5, 41.0] and frame["purpose"].tolist() == ["car", "é"]
    assert requested(payload) == ([("predictions", True)], "score")


@pytest.mark.parametrize(("cut", "length", "field"), [
    (-3, None, "inputs.purpose.parameters.binary_data_size"),
    (0, "abc", "Inference-Header-Content-Length"),
    (0, "99999", "Inference-Header-Content-Length"),
])
def test_a_broken_binary_body_names_what_is_wrong(cut, length, field):
    body, real = _binary(("age", "FP64", [1.0]), ("purpose", "BYTES", ["car"]))
    with pytest.raises(BadRequest) as err:
        parse_infer(body[:len(body) + cut] if cut else body, COLS, length or real)
    assert err.value.field == field and err.value.status == 400


def test_the_response_names_the_version_and_can_be_binary():
    body, head = infer_response("m", "3", "r1", [0.5], decisions=[1],
                                outputs=[("predictions", False)])
    answer = json.loads(body)
    assert head is None and answer["model_version"] == "3"
    assert answer["outputs"][0] == {"name": "predictions", "datatype": "FP64", "shape": [1],
                                    "data": [0.5]}
    body, head = infer_response("m", "3", "r1", [0.5, 0.25], decisions=[1, 0],
                                outputs=[("predictions", True), ("decisions", True)])
    assert head is not None
    meta = json.loads(body[:head])
    assert [o["parameters"]["binary_data_size"] for o in meta["outputs"]] == [16, 16]
    assert np.frombuffer(body[head:head + 16], "<f8").tolist() == [0.5, 0.25]
    assert np.frombuffer(body[head + 16:], "<i8").tolist() == [1, 0]


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


@pytest.mark.parametrize(("payload", "field"), [
    ({"outputs": [{"name": []}]}, "outputs[0].name"),
    ({"parameters": {"output": {}}}, "parameters.output"),
])
def test_requested_outputs_of_the_wrong_kind_are_a_400(payload, field):
    with pytest.raises(BadRequest) as err:
        requested(payload)
    assert err.value.field == field and err.value.status == 400
