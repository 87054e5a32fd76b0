"""The whole loop on a local Ray: every stage real (Ray Data, Train, Serve, MLflow, SQL)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import requests
import yaml

from raymlops.data import demo
from raymlops.lineage.query import CHAIN, chain_for
from raymlops.lineage.store import LineageStore
from raymlops.workspace import Workspace

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ws(demo_run) -> Workspace:
    workspace = Workspace.at(demo_run["workdir"])
    mlflow.set_tracking_uri(workspace.mlflow_uri)
    yield workspace
    from ray import serve

    serve.delete("demo-lending")  # the other modules do not need it


@pytest.fixture(scope="module")
def production_rows(ws) -> pd.DataFrame:
    return pd.read_csv(ws.demo_data_dir / "production.csv").drop(columns=[demo.TARGET])


def test_summary_reports_a_served_registered_model(demo_run):
    s = demo_run["summary"]
    assert s["status"] == "succeeded"
    assert s["model_name"] == "demo-lending" and s["model_version"] == "1"
    assert s["metrics"]["roc_auc"] > 0.65
    assert s["gate"]["passed"] is True
    assert s["replay"]["ok"] == s["replay"]["requests"] == 400
    assert json.loads(Path(s["summary_path"]).read_text())["model_version"] == "1"


def test_model_is_in_the_registry_with_aliases(ws):
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias("demo-lending", "champion").version) == "1"
    assert str(client.get_model_version_by_alias("demo-lending", "candidate").version) == "1"
    run = client.get_run(client.get_model_version("demo-lending", "1").run_id)
    assert float(run.data.metrics["test_roc_auc"]) > 0.65
    assert run.data.tags["raymlops.dataset_digest"].startswith("sha256:")
    assert len(client.get_metric_history(run.info.run_id, "valid_auc")) == 150
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "data")}
    assert {"data/validation.json", "data/validation.html", "data/dataset.json"} <= logged


def test_endpoint_answers_real_http_with_the_version_header(demo_run, production_rows):
    url = demo_run["summary"]["endpoint"]
    rows = production_rows.head(3)
    answer = requests.post(url, data=rows.to_json(orient="split", index=False).join(
        ['{"dataframe_split": ', "}"]), headers={"Content-Type": "application/json"}, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["X-Model-Version"] == "1"
    predictions = answer.json()["predictions"]
    assert len(predictions) == 3 and all(0.0 <= p <= 1.0 for p in predictions)
    csv = requests.post(url, data=rows.to_csv(index=False), timeout=30,
                        headers={"Content-Type": "text/csv"})
    assert csv.status_code == 200 and csv.json()["predictions"] == pytest.approx(predictions)


def test_served_predictions_equal_the_registered_pyfunc(demo_run, production_rows):
    rows = production_rows.head(25)
    model = mlflow.pyfunc.load_model("models:/demo-lending@champion")
    local = model.predict(rows)
    served = requests.post(demo_run["summary"]["endpoint"], timeout=30,
                           json={"dataframe_records": json.loads(rows.to_json(orient="records"))})
    assert served.json()["predictions"] == pytest.approx(list(local), abs=1e-6)


@pytest.mark.parametrize(("payload", "field"), [
    ({"dataframe_records": [{"age": 30}]}, "income"),
    ({"dataframe_split": {"columns": ["age"], "data": [[1, 2]]}}, "dataframe_split.data[0]"),
    ({"wrong": []}, "wrong"),
])
def test_bad_requests_get_4xx_naming_the_field(demo_run, production_rows, payload, field):
    answer = requests.post(demo_run["summary"]["endpoint"], json=payload, timeout=30)
    assert answer.status_code == 400
    assert answer.json()["field"] == field


def test_non_numeric_value_is_a_400_and_the_replica_survives(demo_run, production_rows):
    url = demo_run["summary"]["endpoint"]
    record = json.loads(production_rows.head(1).to_json(orient="records"))[0]
    record["income"] = "a lot"
    bad = requests.post(url, json={"dataframe_records": [record]}, timeout=30)
    assert bad.status_code == 400 and bad.json()["field"] == "income"
    record["income"] = 50000
    assert requests.post(url, json={"dataframe_records": [record]}, timeout=30).ok


def test_every_stage_wrote_a_linked_lineage_event(ws, demo_run):
    store = LineageStore(ws.lineage_url)
    chain = chain_for(store, "demo-lending", "1")
    # every event of the story, except the one only a retrain writes
    assert [step["kind"] for step in chain["steps"]] == [k for k in CHAIN
                                                          if k != "retrain_data_checked"]
    digests = {step["dataset_digest"] for step in chain["steps"]}
    assert digests == {chain["dataset_digest"]}
    deployed = next(s for s in chain["steps"] if s["kind"] == "model_deployed")
    assert deployed["payload"]["weights"] == {"1": 100.0}
    assert "no version of this model is serving" in deployed["payload"]["reason"]
    assert deployed["payload"]["previous_weights"] == {}


def test_drift_report_flags_the_known_drift_on_captured_traffic(demo_run):
    report = json.loads(Path(demo_run["summary"]["reports"]["drift"]).read_text())
    assert report["current_rows"] >= 400
    assert set(demo.DRIFTED_COLUMNS) <= set(report["drifted_columns"])
    for stable in ("age", "loan_amount", "open_accounts", "region", "gender"):
        assert report["columns"][stable]["verdict"] == "stable", stable
    for column in report["columns"].values():
        assert {"test", "p_value", "effect", "verdict"} <= set(column)


def test_raw_emails_never_reach_disk_or_mlflow(ws, demo_run):
    raw = pd.read_csv(ws.demo_data_dir / "train.csv")[demo.ID_COLUMN].head(200).tolist()
    run_dir = ws.run_dir(demo_run["summary"]["run_id"])
    ray_logs = Path("/tmp/ray/session_latest/logs")
    files = [ws.root / "mlflow.db", ws.root / "lineage.db"]  # params, tags, lineage events
    for folder in (run_dir, ws.artifacts_dir, ws.capture_dir, ws.root / "logs", ray_logs):
        files += [p for p in folder.rglob("*") if p.is_file()]  # reports, quarantine, logs
    scanned = 0
    for path in files:
        blob = path.read_bytes()
        scanned += 1
        assert not any(email.encode() in blob for email in raw), path
    assert scanned > 50


def test_rerun_with_the_same_run_id_reuses_stages_and_version(ws, demo_run, serve_port):
    """A second attempt of the same run redoes only what lives outside our stores."""
    from raymlops import Pipeline, load_config

    text = resources.files("raymlops").joinpath("_resources/demo.yaml").read_text()
    config = load_config(yaml.safe_load(text), {"deploy.port": serve_port,
                                                "monitor.replay.rows": 60})
    client = mlflow.MlflowClient()
    before = len(client.search_model_versions("name='demo-lending'"))
    summary = Pipeline(config, workdir=ws.root, run_id=demo_run["summary"]["run_id"]).run()
    for name in ("ingest", "validate", "preprocess", "train", "evaluate", "register"):
        assert summary.stages[name]["status"] == "reused", (name, summary.stages)
    assert summary.stages["deploy"]["status"] == "ran"
    assert summary.stages["monitor"]["status"] == "ran"
    assert summary.model_version == "1"
    assert summary.replay["ok"] == 60
    assert len(client.search_model_versions("name='demo-lending'")) == before


def _cli_json(*args: str) -> object:
    import contextlib
    import io

    from raymlops.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main([*args, "--json"]) == 0
    return json.loads(out.getvalue())


def test_lineage_command_prints_the_chain_for_an_alias(ws):
    chain = _cli_json("lineage", "demo-lending@champion", "--workdir", str(ws.root))
    assert chain["version"] == "1"
    assert chain["steps"][0]["payload"]["rows"] == 12000
    assert chain["steps"][-1]["kind"] == "drift_computed"


def test_status_command_reports_the_live_split(ws, demo_run):
    rows = _cli_json("status", "--workdir", str(ws.root))
    assert rows == [{**rows[0], "model": "demo-lending", "version": "1",
                     "weights": {"1": 100.0}, "live": True}]


def test_training_and_serving_paths_build_identical_feature_vectors(ws, demo_run,
                                                                   production_rows):
    """No train/serve skew: the Ray Data training transform and a live replica agree."""
    import numpy as np
    import ray.data
    from ray import serve

    from raymlops.data.features import FittedFeatures
    from raymlops.training.trainer import ToFeatures

    run_dir = ws.run_dir(demo_run["summary"]["run_id"])
    fitted = FittedFeatures.load(run_dir / "features.json")
    rows = production_rows.head(200)
    training_path = ray.data.from_pandas(rows).map_batches(
        ToFeatures(fitted), batch_format="pandas").to_pandas()[fitted.feature_names]
    replica = serve.get_deployment_handle("demo-lending-v1", app_name="demo-lending")
    serving_path = np.array(replica.features.remote(rows).result(timeout_s=60))
    assert serving_path.shape == (200, len(fitted.feature_names))
    np.testing.assert_array_equal(training_path.to_numpy(), serving_path)


def test_dataset_profile_is_recorded_in_lineage_and_mlflow(ws, demo_run):
    chain = chain_for(LineageStore(ws.lineage_url), "demo-lending", "1")
    profile = chain["steps"][0]["payload"]["profile"]
    assert profile["income"]["kind"] == "number" and profile["income"]["nulls"] > 0
    assert profile["purpose"]["distinct"] == 6
    run_id = mlflow.MlflowClient().get_model_version("demo-lending", "1").run_id
    dataset = mlflow.artifacts.load_dict(f"runs:/{run_id}/data/dataset.json")
    assert dataset["digest"] == chain["dataset_digest"]
    assert dataset["profile"]["credit_score"]["min"] >= 300
