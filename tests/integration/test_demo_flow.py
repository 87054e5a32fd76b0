"""The whole loop on a local Ray: every stage real (Ray Data, Train, Serve, MLflow, SQL)."""

from __future__ import annotations

import json
import re
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
    assert str(client.get_model_version_by_alias("demo-lending", "challenger").version) == "1"
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


def test_serving_uses_the_versions_decision_threshold(demo_run, production_rows):
    """The threshold chosen on the validation split travels with the version: the answer
    names it, and `params.output=decision` gives the pyfunc's own 0/1 decisions."""
    rows = production_rows.head(40)
    records = json.loads(rows.to_json(orient="records"))
    url = demo_run["summary"]["endpoint"]
    scores = requests.post(url, json={"dataframe_records": records}, timeout=30)
    decided = requests.post(url, json={"dataframe_records": records,
                                       "params": {"output": "decision"}}, timeout=30)
    assert scores.status_code == decided.status_code == 200, decided.text
    threshold = float(decided.headers["X-Decision-Threshold"])
    assert threshold == pytest.approx(demo_run["summary"]["metrics"]["threshold"], abs=1e-5)
    local = mlflow.pyfunc.load_model("models:/demo-lending/1").predict(
        rows, params={"output": "decision"})
    assert decided.json()["predictions"] == [int(v) for v in local]
    assert decided.json()["predictions"] == [int(p >= threshold)
                                             for p in scores.json()["predictions"]]
    bad = requests.post(url, json={"dataframe_records": records, "params": {"output": "x"}},
                        timeout=30)
    assert bad.status_code == 400 and bad.json()["field"] == "params.output"


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
    kinds = [e.kind for e in store.events(run_id=chain["run_id"])]
    assert len(kinds) == len(set(kinds))  # one event per stage that ran


def test_drift_report_flags_the_known_drift_on_captured_traffic(demo_run):
    report = json.loads(Path(demo_run["summary"]["reports"]["drift"]).read_text())
    assert report["current_rows"] >= 400
    assert set(demo.DRIFTED_COLUMNS) <= set(report["drifted_columns"])
    for stable in ("age", "loan_amount", "open_accounts", "region", "gender"):
        assert report["columns"][stable]["verdict"] == "stable", stable
    for column in report["columns"].values():
        assert {"test", "p_value", "effect", "verdict"} <= set(column)


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


def test_dataset_profile_is_recorded_in_lineage_and_mlflow(ws, demo_run):
    chain = chain_for(LineageStore(ws.lineage_url), "demo-lending", "1")
    profile = chain["steps"][0]["payload"]["profile"]
    assert profile["income"]["kind"] == "number" and profile["income"]["nulls"] > 0
    assert profile["purpose"]["distinct"] == 6
    run_id = mlflow.MlflowClient().get_model_version("demo-lending", "1").run_id
    dataset = mlflow.artifacts.load_dict(f"runs:/{run_id}/data/dataset.json")
    assert dataset["digest"] == chain["dataset_digest"]
    assert dataset["profile"]["credit_score"]["min"] >= 300


def test_training_and_serving_paths_score_the_same_raw_rows_alike(ws, demo_run, tmp_path):
    """No train/serve skew: the production CSV scored through HTTP as JSON (as a client
    writes it), through the MLflow pyfunc with Arrow-backed input read from Parquet, and
    through the training path (validation's normalization, then the training transform)."""
    import numpy as np
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq
    import xgboost

    from raymlops import load_config
    from raymlops.data.rules import RowChecker
    from raymlops.features import FittedFeatures
    from raymlops.training.trainer import ToFeatures

    run_dir = ws.run_dir(demo_run["summary"]["run_id"])
    fitted = FittedFeatures.load(run_dir / "features.json")
    raw = ws.demo_data_dir / "production.csv"
    records = json.loads(pd.read_csv(raw).head(1000).to_json(orient="records"))
    http = requests.post(demo_run["summary"]["endpoint"], timeout=60,
                         json={"dataframe_records": records})
    assert http.status_code == 200, http.text
    served = np.array(http.json()["predictions"])

    # Arrow's reader, with the holes of text columns as nulls (as in Parquet written by Ray)
    table = pacsv.read_csv(raw, convert_options=pacsv.ConvertOptions(
        strings_can_be_null=True)).slice(0, 1000)
    pq.write_table(table, tmp_path / "production.parquet")
    arrow_backed = pd.read_parquet(tmp_path / "production.parquet", dtype_backend="pyarrow")
    assert any(isinstance(t, pd.ArrowDtype) for t in arrow_backed.dtypes)
    # a missing Arrow-backed string: MLflow's schema enforcement made it the text '<NA>'
    assert arrow_backed["home_ownership"].isna().any()
    pyfunc = np.asarray(mlflow.pyfunc.load_model("models:/demo-lending/1").predict(arrow_backed))

    text = resources.files("raymlops").joinpath("_resources/demo.yaml").read_text()
    config = load_config(yaml.safe_load(text))
    checked = RowChecker(config.data, fitted.spec)(table.to_pandas())
    matrix = ToFeatures(fitted)(checked)[fitted.feature_names].to_numpy()
    booster = xgboost.Booster()
    booster.load_model(str(run_dir / "model" / "model.ubj"))
    trained = booster.inplace_predict(matrix)

    np.testing.assert_allclose(served, pyfunc, atol=1e-6)
    np.testing.assert_allclose(served, trained, atol=1e-6)


def test_a_live_replica_builds_the_training_feature_vectors(ws, demo_run, production_rows):
    """The replica's vectors for raw rows equal the training path's for the same rows
    after ingest's PII policy and validation's normalization (what the trainer reads)."""
    import numpy as np
    from ray import serve

    from raymlops import load_config
    from raymlops.data.rules import RowChecker
    from raymlops.features import FittedFeatures
    from raymlops.features.pii import Protector, load_pii_key
    from raymlops.training.trainer import ToFeatures

    fitted = FittedFeatures.load(ws.run_dir(demo_run["summary"]["run_id"]) / "features.json")
    config = load_config(yaml.safe_load(resources.files("raymlops").joinpath(
        "_resources/demo.yaml").read_text()))
    rows = production_rows.head(100)
    replica = serve.get_deployment_handle("demo-lending", app_name="demo-lending")
    vectors = np.array(replica.features_of.remote("1", rows).result(timeout_s=60))
    key, _ = load_pii_key(ws.root)
    checked = RowChecker(config.data, fitted.spec)(
        Protector(config.data.pii, key)(rows).assign(defaulted=0))
    training = ToFeatures(fitted)(checked)[fitted.feature_names].to_numpy()
    np.testing.assert_array_equal(vectors, training)


def test_malformed_requests_never_get_a_5xx_and_the_server_still_answers(demo_run,
                                                                       production_rows):
    """Over HTTP: overflowing integers, 1e400, NaN tokens, booleans, duplicate keys and
    columns, missing keys, junk bytes; every answer is a 4xx JSON naming a field."""
    import random

    url = demo_run["summary"]["endpoint"]
    good = json.loads(production_rows.head(1).to_json(orient="records"))[0]
    rng = random.Random(7)
    numbers = ["age", "income", "loan_amount", "credit_score", "debt_to_income"]
    # none of these is a valid number; every body below is malformed
    tokens = ["9" * 400, "1e400", "-1e400", "NaN", "Infinity", "true", "[1]", '{"a": 1}',
              '"x"', '"1_000"']
    bodies: list[tuple[bytes, str]] = []
    for _ in range(250):
        record = dict(good)
        column = rng.choice([c for c in record if c not in ("email", "defaulted")])
        kind = rng.randrange(5)
        if kind == 0:  # a raw JSON token where a number belongs
            body = json.dumps({**record, rng.choice(numbers): "@@"}).replace(
                '"@@"', rng.choice(tokens))
            bodies.append((f'{{"dataframe_records": [{body}]}}'.encode(), "application/json"))
        elif kind == 1:  # the second record lacks a column
            record.pop(column)
            bodies.append((json.dumps({"dataframe_records": [good, record]}).encode(),
                           "application/json"))
        elif kind == 2:  # a column named twice
            bodies.append((json.dumps({"dataframe_split": {
                "columns": [*record, column], "data": [[*record.values(), 1]]}}).encode(),
                "application/json"))
        elif kind == 3:  # junk bytes
            bodies.append((bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))),
                           rng.choice(["application/json", "text/csv"])))
        else:  # a key twice in one object
            body = json.dumps({"instances": [record]}).replace("[{", f'[{{"{column}": 1, ', 1)
            bodies.append((body.encode(), "application/json"))
    session = requests.Session()
    client_errors = 0
    for body, ctype in bodies:
        answer = session.post(url, data=body, headers={"Content-Type": ctype}, timeout=30)
        assert answer.status_code < 500, (body[:200], answer.text)
        if answer.status_code >= 400:
            client_errors += 1
            assert answer.json()["field"], answer.text
    assert client_errors == len(bodies)
    after = session.post(url, json={"dataframe_records": [good]}, timeout=30)
    assert after.status_code == 200 and len(after.json()["predictions"]) == 1


def test_demo_shows_its_model_card_audit_trail_changes_and_serving_at(ws, demo_run):
    """The parts issue 9 adds, on the demo's own work directory: the summary links a
    self-contained model card, the audit chain verifies, the deployment went through a
    change record, and serving-at answers for now with the version's provenance."""
    import datetime as dt

    s = demo_run["summary"]
    assert {"challenger", "champion", "production"} <= set(s["aliases"])
    card = Path(s["reports"]["model_card"]).read_text()
    for part in ("ROC curve", "precision-recall", "calibration", "Confusion matrix",
                 "Fairness per group", "Feature importance", "Gate verdict",
                 str(s["gate"]["reasons"][0])[:20]):
        assert part in card, part
    assert "<script src" not in card and "src='http" not in card and 'src="http' not in card
    # the 3 % group (about 72 of the 2,400 holdout rows) is shown, not judged, and the
    # fairness rule's reason says so
    assert re.search(r"fairness_min_rows=100 not judged \(X: \d\d rows\)",
                     " ".join(map(str, s["gate"]["reasons"]))), s["gate"]["reasons"]
    run_id = mlflow.MlflowClient().get_model_version("demo-lending", "1").run_id
    assert "reports/model_card.html" in {
        a.path for a in mlflow.MlflowClient().list_artifacts(run_id, "reports")}

    workdir = ["--workdir", str(ws.root)]
    verified = _cli_json("audit", "verify", *workdir)
    assert verified["ok"] is True and verified["entries"] >= 10, verified
    changes = _cli_json("changes", "demo-lending", *workdir)
    assert [(c["id"], c["to_version"], c["env"], c["state"]) for c in changes] == [
        ("CHG-000001", "1", "production", "implemented")]
    tags = mlflow.MlflowClient().get_model_version("demo-lending", "1").tags
    assert tags["raymlops.change"] == "CHG-000001" and tags["raymlops.gate"] == "passed"
    assert tags["raymlops.config_hash"].startswith("sha256:")

    now = dt.datetime.now(dt.UTC).isoformat()
    [serving] = _cli_json("serving-at", "demo-lending", now, *workdir)["environments"]
    chain = chain_for(LineageStore(ws.lineage_url), "demo-lending", "1")
    assert serving["env"] == "production" and serving["change"] == "CHG-000001"
    [version] = serving["versions"]
    assert (version["version"], version["share"]) == ("1", 100.0)
    assert version["dataset_digest"] == chain["dataset_digest"]
    assert version["gate"]["passed"] is True and version["approvers"] == []


def test_evaluate_command_scores_a_fresh_labelled_table_against_a_version(ws, demo_run):
    """`raymlops evaluate` on the raw production CSV (label included): the version's own
    normalization, PII handling, positive class and threshold apply."""
    table = pd.read_csv(ws.demo_data_dir / "production.csv")
    out = _cli_json("evaluate", "demo-lending/1", "--data",
                    str(ws.demo_data_dir / "production.csv"), "--workdir", str(ws.root))
    assert out["rows"] + out["rows_without_label"] == len(table)
    assert out["rows"] > 0.9 * len(table)
    tags = mlflow.MlflowClient().get_model_version("demo-lending", "1").tags
    assert out["threshold"] == pytest.approx(float(tags["raymlops.threshold"]))
    assert 0.5 < out["metrics"]["roc_auc"] < 1.0
    assert {"F", "M"} <= set(out["slices"]["gender"])
    assert "income < 30000" in out["slices"]["expressions"]
    assert out["fairness"]["gender"]["demographic_parity_difference"] >= 0.0
    assert out["rows_per_s"] > 0


def test_rerun_with_the_same_run_id_reuses_stages_and_what_serves(ws, demo_run, serve_port):
    """A second attempt of the same run redoes only the monitor: the deployment still runs
    as recorded, so it is reused, its replicas keep running, and no event repeats."""
    from ray import serve

    from raymlops import Pipeline, load_config

    text = resources.files("raymlops").joinpath("_resources/demo.yaml").read_text()
    config = load_config(yaml.safe_load(text), {"deploy.port": serve_port,
                                                "monitor.replay.rows": 60})
    run_id = demo_run["summary"]["run_id"]
    client = mlflow.MlflowClient()
    before = len(client.search_model_versions("name='demo-lending'"))
    store = LineageStore(ws.lineage_url)
    events_before = [e.kind for e in store.events(run_id=run_id)]
    status_before = _cli_json("status", "--workdir", str(ws.root))
    replica = serve.get_deployment_handle("demo-lending", app_name="demo-lending")
    identity = replica.identity.remote().result(timeout_s=30)
    summary = Pipeline(config, workdir=ws.root, run_id=run_id).run()
    for name in ("ingest", "validate", "preprocess", "train", "evaluate", "register", "deploy"):
        assert summary.stages[name]["status"] == "reused", (name, summary.stages)
    assert summary.stages["monitor"]["status"] == "ran"
    assert summary.model_version == "1"
    assert summary.replay["ok"] == 60
    assert len(client.search_model_versions("name='demo-lending'")) == before
    events_after = [e.kind for e in store.events(run_id=run_id)]
    # only the stage that ran, and what this attempt used (the monitor alone)
    assert events_after == [*events_before, "drift_computed", "resources_used"]
    [*_, used] = store.events(run_id=run_id, kind="resources_used")
    assert list(used.payload["stages"]) == ["monitor"]
    assert _cli_json("status", "--workdir", str(ws.root))[0]["since"] == status_before[0]["since"]
    assert replica.identity.remote().result(timeout_s=30) == identity  # not restarted


def test_raw_emails_never_reach_disk_or_mlflow(ws, demo_run):
    """Training ids and production ids (sent as requests) never land in a file of the run,
    Parquet decoded, every folder the run wrote, and Ray's session logs."""
    from tests.pii_scan import scan_for, session_logs

    train = pd.read_csv(ws.demo_data_dir / "train.csv")[demo.ID_COLUMN].tolist()
    production = pd.read_csv(ws.demo_data_dir / "production.csv")[demo.ID_COLUMN].tolist()
    found = scan_for([*train[:500], *production[:400]], ws.root,
                     skip=[ws.demo_data_dir], extra=[session_logs()])
    assert found.hits == [], found.hits[:5]
    assert found.parquet_files > 10 and found.files > 50
