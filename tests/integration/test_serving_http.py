"""Two versions side by side on a real Ray Serve, through both protocols.

One co-located application holds versions 1 (10 trees) and 2 (2 trees): their scores
differ, so a request scored by the wrong version shows. It holds the root route, so the
standard paths (``/invocations``, ``/v2/...``) are tested with an unmodified
``tritonclient.http`` client, as well as the application's own prefix.
"""

from __future__ import annotations

import concurrent.futures as futures
import io
import json
import uuid

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raymlops.config import DeployConfig
from raymlops.serving.deploy import deploy

pytestmark = pytest.mark.integration
APP = "http-test"


@pytest.fixture(scope="module")
def served(serving_models, serve_port):
    ws = serving_models["ws"]
    mlflow.set_tracking_uri(ws.mlflow_uri)
    expected = {v: mlflow.pyfunc.load_model(uri).predict(serving_models["rows"])
                for v, uri in serving_models["uris"].items()}
    config = DeployConfig(name=APP, port=serve_port, standard_paths="always",
                          max_body_bytes=256 * 1024,
                          routing={"allow_override": True, "sticky_field": "region"})
    result = deploy(config, versions=serving_models["uris"], weights={"1": 90, "2": 10},
                    tracking_uri=ws.mlflow_uri, capture_root=None)
    base = f"http://127.0.0.1:{serve_port}"
    yield {"config": config, "result": result, "base": base, "rows": serving_models["rows"],
           "expected": expected, "models": serving_models}
    from ray import serve

    serve.delete(APP)


def _post(url: str, **kwargs) -> requests.Response:
    return requests.post(url, timeout=30, **kwargs)


def _records(rows: pd.DataFrame) -> list[dict]:
    return json.loads(rows.to_json(orient="records"))


@pytest.mark.parametrize("form", ["dataframe_split", "dataframe_records", "instances",
                                  "instances_positional", "inputs", "csv"])
@pytest.mark.parametrize("prefix", ["", f"/{APP}"])
def test_every_mlflow_form_scores_like_the_pyfunc(served, form, prefix):
    rows = served["rows"].head(5)
    records = _records(rows)
    columns = list(rows.columns)
    if form == "csv":
        buffer = io.StringIO()
        rows.to_csv(buffer, index=False)
        kwargs = {"data": buffer.getvalue(), "headers": {"Content-Type": "text/csv"}}
    else:
        body = {"dataframe_split": {"columns": columns,
                                    "data": [[r[c] for c in columns] for r in records]},
                "dataframe_records": records, "instances": records,
                "instances_positional": [[r[c] for c in columns] for r in records],
                "inputs": {c: [r[c] for r in records] for c in columns}}[form]
        key = "instances" if form == "instances_positional" else form
        kwargs = {"json": {key: body}}
    headers = {"x-raymlops-version": "2", **kwargs.pop("headers", {})}
    answer = _post(f"{served['base']}{prefix}/invocations", headers=headers, **kwargs)
    assert answer.status_code == 200, answer.text
    assert answer.headers["X-Model-Version"] == "2"
    np.testing.assert_allclose(answer.json()["predictions"], served["expected"]["2"][:5],
                               atol=1e-6)


def test_mlflow_server_routes_and_errors(served):
    base = served["base"]
    for path in ("/ping", "/health", f"/{APP}/health", "/version"):
        assert requests.get(base + path, timeout=10).status_code == 200, path
    assert requests.get(base + "/version", timeout=10).text == mlflow.__version__
    cases = [
        ({"data": "x", "headers": {"Content-Type": "text/plain"}}, 415, "content-type"),
        ({"data": "{", "headers": {"Content-Type": "application/json"}}, 400, "body"),
        ({"json": {"dataframe_records": [{"age": 1}]}}, 400, "income"),
        ({"data": b"x" * 300_000, "headers": {"Content-Type": "text/csv"}}, 413, "body"),
        ({"json": {"instances": _records(served["rows"].head(1))},
          "headers": {"x-raymlops-version": "7"}}, 400, "x-raymlops-version"),
        ({"json": {"instances": _records(served["rows"].head(1)), "params": {"x": 1}}}, 400,
         "params.x"),
    ]
    for kwargs, status, field in cases:
        answer = _post(base + "/invocations", **kwargs)
        assert answer.status_code == status, (kwargs.get("headers"), answer.text)
        body = answer.json()
        assert body["field"] == field and body["error_code"] and body["message"]
    assert requests.get(base + "/invocations", timeout=10).status_code == 405
    document = requests.get(f"{base}/openapi.json", timeout=10).json()
    assert f"/v2/models/{APP}/infer" in document["paths"] and "/invocations" in document["paths"]


def test_an_unmodified_tritonclient_works(served):
    import tritonclient.http as triton

    rows = served["rows"].head(4)
    client = triton.InferenceServerClient(url=served["base"].removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(APP)
    metadata = client.get_model_metadata(APP)
    assert metadata["name"] == APP and metadata["versions"] == ["1", "2"]
    config = client.get_model_config(APP)
    assert {i["name"] for i in config["input"]} == set(rows.columns)
    numeric = {i["name"] for i in metadata["inputs"] if i["datatype"] == "FP64"}
    inputs = []
    for column in rows.columns:
        if column in numeric:
            tensor = triton.InferInput(column, [len(rows)], "FP64")
            tensor.set_data_from_numpy(rows[column].to_numpy(dtype=np.float64))
        else:
            tensor = triton.InferInput(column, [len(rows)], "BYTES")
            tensor.set_data_from_numpy(rows[column].astype(str).to_numpy(dtype=np.object_))
        inputs.append(tensor)
    for version in ("1", "2"):
        result = client.infer(APP, inputs, model_version=version)  # binary in and out
        assert result.get_response()["model_version"] == version
        np.testing.assert_allclose(result.as_numpy("predictions"),
                                   served["expected"][version][:4], atol=1e-6)
    # no version named: routed by weight; the response says which answered
    routed = client.infer(APP, inputs, outputs=[triton.InferRequestedOutput(
        "predictions", binary_data=False)])
    version = routed.get_response()["model_version"]
    np.testing.assert_allclose(routed.as_numpy("predictions"),
                               served["expected"][version][:4], atol=1e-6)


def test_open_inference_json_and_its_errors(served):
    base, rows = served["base"], served["rows"].head(2)
    meta = requests.get(f"{base}/v2/models/{APP}", timeout=10).json()
    kinds = {i["name"]: i["datatype"] for i in meta["inputs"]}
    tensors = [{"name": c, "datatype": kinds[c], "shape": [2],
                "data": [float(v) if kinds[c] == "FP64" else str(v) for v in rows[c]]}
               for c in rows.columns]
    answer = _post(f"{base}/v2/models/{APP}/versions/1/infer", json={"inputs": tensors,
                                                                   "id": "abc"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model_version"] == "1" and body["id"] == "abc"
    np.testing.assert_allclose(body["outputs"][0]["data"], served["expected"]["1"][:2],
                               atol=1e-6)
    bad = [({"inputs": tensors[1:]}, 400, f"inputs.{rows.columns[0]}"),
           ({"inputs": [{**tensors[0], "shape": [3]}, *tensors[1:]]}, 400, "shape"),
           ({"inputs": "x"}, 400, "inputs")]
    for payload, status, field in bad:
        answer = _post(f"{base}/v2/models/{APP}/infer", json=payload)
        assert answer.status_code == status and field in answer.json()["error"], answer.text
    assert requests.get(f"{base}/v2/models/nope", timeout=10).status_code == 404
    assert "error" in requests.get(f"{base}/v2/models/nope", timeout=10).json()


def test_concurrent_requests_are_scored_by_the_version_they_were_routed_to(served):
    """Both versions' batching queues busy at once: every answer is its version's score."""
    rows = served["rows"]
    records = _records(rows)

    def one(i: int) -> tuple[int, str, float, str]:
        version = "1" if i % 2 else "2"
        answer = _post(f"{served['base']}/invocations",
                       json={"dataframe_records": [records[i % len(records)]]},
                       headers={"x-raymlops-version": version})
        return i, version, answer.json()["predictions"][0], answer.headers["X-Model-Version"]

    with futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(400)))
    for i, version, score, answered in results:
        assert answered == version
        assert score == pytest.approx(served["expected"][version][i % len(records)], abs=1e-6)


def test_the_split_follows_the_weights_and_keys_stick(served):
    records = _records(served["rows"])

    def one(key: str) -> str:
        answer = _post(f"{served['base']}/invocations", json={"dataframe_records": [
            records[0]]}, headers={"x-routing-key": key})
        return answer.headers["X-Model-Version"]

    keys = [uuid.uuid4().hex for _ in range(600)]
    with futures.ThreadPoolExecutor(16) as pool:
        first = list(pool.map(one, keys))
        again = list(pool.map(one, keys[:100]))
    assert 0.05 < first.count("2") / len(first) < 0.16
    assert again == first[:100]  # sticky
    # the body field: a row goes to the version its region's bucket names
    from raymlops.serving.deploy import current_routing
    from raymlops.serving.routing import RoutingTable

    table = RoutingTable(current_routing(APP))
    for record in records[:40]:
        answer = _post(f"{served['base']}/invocations", json={"dataframe_records": [record]})
        assert answer.headers["X-Model-Version"] == table.choose(str(record["region"]))


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=8), lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)


@st.composite
def _requests(draw, columns: list[str], paths: list[str]
              ) -> tuple[str, str, bytes, dict[str, str]]:
    """A malformed or odd request for any route of the OpenAPI document (and a few that
    are not in it): the forms, tensors and headers of the API with fields dropped,
    renamed, retyped, duplicated or truncated."""
    path = draw(st.sampled_from([*paths, f"/v2/models/{APP}/versions/9/infer",
                                 "/v2/models/x/infer", f"/v2/models/{APP}/nope", "/nope"]))
    column = draw(st.sampled_from([*columns, "extra"]))
    value = draw(_json_values)
    kind = draw(st.integers(0, 7))
    headers: dict[str, str] = {}
    if kind == 0:  # a record with one value replaced or a column dropped
        record = {c: 1 for c in columns if c != column or draw(st.booleans())}
        record[column] = value
        body = json.dumps({draw(st.sampled_from(["dataframe_records", "instances", "inputs",
                                                 "records"])): [record]}).encode()
    elif kind == 1:  # a split whose rows do not fit its columns
        body = json.dumps({"dataframe_split": {"columns": draw(st.lists(st.sampled_from(
            [*columns, "x"]), max_size=4)), "data": draw(st.lists(_json_values,
                                                                  max_size=3))}}).encode()
    elif kind == 2:  # an OIP tensor with a wrong datatype, shape or data
        body = json.dumps({"inputs": [{"name": column, "datatype": draw(st.sampled_from(
            ["FP64", "BYTES", "INT8", "BOOL", "FP16", "x"])), "shape": draw(_json_values),
            "data": value}], "outputs": draw(_json_values)}).encode()
    elif kind == 3:  # the binary extension with a header length that lies
        head = json.dumps({"inputs": [{"name": column, "datatype": "FP64", "shape": [1],
                                       "parameters": {"binary_data_size": draw(_json_values)}}
                                      ]}).encode()
        body = head + draw(st.binary(max_size=24))
        headers["Inference-Header-Content-Length"] = str(draw(st.integers(-5, len(body) + 5)))
    elif kind == 4:  # params and parameters of the wrong kind
        body = json.dumps({"dataframe_records": [dict.fromkeys(columns, 1)], "params": value,
                           "parameters": value}).encode()
    elif kind == 5:  # bytes, or a body claiming a compression it does not have
        body = draw(st.binary(max_size=64))
        headers["Content-Encoding"] = draw(st.sampled_from(["gzip", "deflate", "br",
                                                            "identity"]))
    elif kind == 6:  # every input tensor, one of them (or the outputs) broken
        tensors = [{"name": c, "datatype": "BYTES", "shape": [1], "data": ["1"]}
                   for c in columns]
        broken = draw(st.integers(0, len(tensors) - 1))
        tensors[broken][draw(st.sampled_from(["datatype", "shape", "data", "name",
                                              "parameters"]))] = value
        body = json.dumps({"inputs": tensors, "outputs": draw(st.one_of(
            st.none(), st.lists(st.fixed_dictionaries({"name": _json_values}), max_size=2))),
            "parameters": draw(st.one_of(st.none(), st.fixed_dictionaries({
                "output": _json_values, "binary_data_output": _json_values})))}).encode()
    else:  # a valid body under a content type that does not match
        body = json.dumps({"dataframe_records": [dict.fromkeys(columns, 1)]}).encode()
    headers["Content-Type"] = draw(st.sampled_from(["application/json", "text/csv",
                                                    "text/plain", "", "application/json; x"]))
    if draw(st.booleans()):
        headers["x-raymlops-version"] = draw(st.sampled_from(["1", "2", "9", ""]))
    return draw(st.sampled_from(["POST", "POST", "GET", "PUT"])), path, body, headers


def test_thousands_of_fuzzed_requests_never_get_a_5xx(served):
    columns = list(served["rows"].columns)
    paths = sorted(requests.get(f"{served['base']}/openapi.json", timeout=10).json()["paths"])
    session = requests.Session()
    seen: dict[int, int] = {}

    @settings(max_examples=2000, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(_requests(columns, paths))
    def fuzz(request):
        method, path, body, headers = request
        answer = session.request(method, served["base"] + path, data=body, headers=headers,
                                 timeout=30)
        seen[answer.status_code] = seen.get(answer.status_code, 0) + 1
        assert answer.status_code < 500, (method, path, body[:200], answer.text)
        if answer.status_code >= 400:
            error = answer.json()
            assert error.get("field") or error.get("error"), answer.text

    fuzz()
    assert sum(seen.values()) >= 2000 and any(400 <= code < 500 for code in seen)
    record = _records(served["rows"].head(1))
    after = session.post(f"{served['base']}/invocations", json={"dataframe_records": record},
                         headers={"x-raymlops-version": "1"}, timeout=30)
    assert after.status_code == 200
    assert after.json()["predictions"][0] == pytest.approx(served["expected"]["1"][0], abs=1e-6)
