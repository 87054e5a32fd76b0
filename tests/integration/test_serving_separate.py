"""The separate shape on a real Ray Serve: an ingress in front of one deployment per
version, routing by the same logic and answering through the same frontend."""

from __future__ import annotations

import json
import uuid

import mlflow
import numpy as np
import pytest
import requests

from raymlops.config import DeployConfig
from raymlops.serving.deploy import deploy, flush_capture

pytestmark = pytest.mark.integration
APP = "separate-test"


def test_one_deployment_per_version_behind_an_ingress(serving_models, serve_port):
    from ray import serve

    ws = serving_models["ws"]
    mlflow.set_tracking_uri(ws.mlflow_uri)
    rows = serving_models["rows"].head(3)
    expected = {v: mlflow.pyfunc.load_model(uri).predict(rows)
                for v, uri in serving_models["uris"].items()}
    config = DeployConfig(name=APP, port=serve_port, placement="separate",
                          standard_paths="never", routing={"allow_override": True})
    result = deploy(config, versions=serving_models["uris"], weights={"1": 70, "2": 30},
                    tracking_uri=ws.mlflow_uri, capture_root=ws.capture_dir)
    try:
        assert result.placement == "separate"
        deployments = set(serve.status().applications[APP].deployments)
        assert deployments == {APP, f"{APP}-v1", f"{APP}-v2"}
        records = json.loads(rows.to_json(orient="records"))
        for version in ("1", "2"):
            answer = requests.post(result.endpoint, json={"dataframe_records": records},
                                   headers={"x-raymlops-version": version}, timeout=30)
            assert answer.status_code == 200 and answer.headers["X-Model-Version"] == version
            np.testing.assert_allclose(answer.json()["predictions"], expected[version],
                                       atol=1e-6)
        seen = [requests.post(result.endpoint, json={"dataframe_records": records[:1]},
                              headers={"x-routing-key": uuid.uuid4().hex},
                              timeout=30).headers["X-Model-Version"] for _ in range(150)]
        assert 0.15 < seen.count("2") / len(seen) < 0.45
        bad = requests.post(result.endpoint, json={"dataframe_records": [{"x": 1}]}, timeout=30)
        assert bad.status_code == 400 and bad.json()["field"]
        # a value the version's own deployment rejects: its 400 crosses the handle intact
        wrong = {**records[0], "income": "a lot"}
        bad = requests.post(result.endpoint, json={"dataframe_records": [wrong]}, timeout=30)
        assert bad.status_code == 400, bad.text
        assert bad.json()["field"] == "income" or "income" in bad.json()["message"]
        assert flush_capture(APP, timeout_s=30) >= 156  # both versions' deployments wrote
    finally:
        serve.delete(APP)
