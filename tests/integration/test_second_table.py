"""A differently shaped table runs by config alone, and poisoned batches stop before training.

configs/churn.yaml: Parquet parts, a "Yes"/"No" label, numbers stored as text with
blanks, a 0/1 column declared categorical, a phone number dropped and a birth year
generalized. The poisoned batches each stop in the validate stage with a report.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pandas as pd
import pytest
import requests

from raymlops import Pipeline, load_config
from raymlops.cli import main
from raymlops.data.demo_churn import make_churn_table, write_churn_data
from raymlops.errors import DataValidationError

pytestmark = pytest.mark.integration
CONFIG = Path(__file__).resolve().parents[2] / "configs" / "churn.yaml"


@pytest.fixture(scope="module")
def churn(ray_session, serve_port, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("churn")
    write_churn_data(workdir / "churn-data", rows=4000, files=3)
    schema_path = workdir / "churn-schema.json"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["schema", "--data", str(workdir / "churn-data"), "--config", str(CONFIG),
                     "--out", str(schema_path), "--json"])
        assert code == 0
        code = main(["run", str(CONFIG), "--workdir", str(workdir), "--json",
                     "--set", f"deploy.port={serve_port}",
                     "--set", f"data.validation.schema={schema_path}"])
    assert code == 0, out.getvalue()
    text = out.getvalue()
    summary = json.loads(text[text.index("\n{") + 1:])  # after the schema command's JSON
    yield {"workdir": workdir, "summary": summary, "schema": schema_path}
    from ray import serve

    serve.delete("churn")


def test_string_labels_and_text_numbers_train_a_useful_model(churn):
    summary = churn["summary"]
    assert summary["status"] == "succeeded"
    assert summary["model_name"] == "churn"
    assert summary["metrics"]["roc_auc"] > 0.7
    run_dir = Path(summary["summary_path"]).parent
    validation = json.loads((run_dir / "data" / "validation.json").read_text())
    assert validation["rows_in"] == 4000
    assert validation["rows_in"] == validation["rows_accepted"] + validation["rows_quarantined"]
    assert set(validation["class_balance"]) == {"0.0", "1.0"}
    # no data.positive_label: the positive class was inferred, with its reason, and is
    # recorded with the dataset's lineage and in the model card
    from raymlops.lineage.store import LineageStore
    from raymlops.workspace import Workspace

    store = LineageStore(Workspace.at(churn["workdir"]).lineage_url)
    [ingested] = store.events(run_id=summary["run_id"], kind="dataset_ingested")
    assert ingested.payload["positive_label"] == "Yes"
    assert "conventional positive word" in ingested.payload["positive_reason"]
    card = Path(summary["reports"]["model_card"]).read_text()
    assert "Yes" in card and "conventional positive word" in card
    snapshot = pd.read_parquet(run_dir / "data" / "snapshot")
    assert "phone" not in snapshot.columns
    assert snapshot["birth_year"].str.fullmatch(r"\d{4}-\d{4}").all()


def test_served_model_takes_raw_rows_with_pii_columns(churn):
    rows = make_churn_table(5, seed=99).drop(columns=["Churn"])
    records = json.loads(rows.to_json(orient="records"))
    answer = requests.post(churn["summary"]["endpoint"], json={"dataframe_records": records},
                           timeout=30)
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["predictions"]) == 5


def poisoned(churn, tmp_path, frame: pd.DataFrame, **overrides):
    source = tmp_path / "poisoned"
    source.mkdir()
    frame.to_parquet(source / "part-000.parquet", index=False)
    config = load_config(CONFIG, {"data.source": str(source),
                                  "data.validation.schema": str(churn["schema"]),
                                  **overrides})
    pipeline = Pipeline(config, workdir=churn["workdir"])
    with pytest.raises(DataValidationError) as err:
        pipeline.run()
    report = json.loads((pipeline.run_dir / "data" / "validation.json").read_text())
    assert not (pipeline.run_dir / "model").exists()  # blocked before training
    blocked = pipeline.store.events(run_id=pipeline.run_id, kind="data_blocked")
    assert len(blocked) == 1
    import mlflow

    client = mlflow.MlflowClient()
    mlflow_run = client.get_run(blocked[0].payload["mlflow_run_id"])
    assert mlflow_run.info.status == "FAILED"
    assert {a.path for a in client.list_artifacts(mlflow_run.info.run_id, "data")} == {
        "data/validation.json", "data/validation.html"}
    return str(err.value), report


def test_renamed_column_is_blocked_before_any_row_is_judged(churn, tmp_path):
    frame = make_churn_table(1000, seed=5).rename(columns={"monthly_charges": "monthly_fee"})
    message, report = poisoned(churn, tmp_path, frame,
                               **{"data.numeric": ["tenure_months", "total_charges"]})
    assert "['monthly_charges'] are missing" in message and "monthly_fee" in message
    assert report["stage"] == "schema"


def test_ten_percent_out_of_range_values_are_quarantined_and_block(churn, tmp_path):
    frame = make_churn_table(1000, seed=6)
    frame.loc[frame.sample(frac=0.1, random_state=0).index, "tenure_months"] = 500
    message, report = poisoned(churn, tmp_path, frame)
    assert "10.0% of rows were quarantined" in message
    assert report["rows_quarantined"] == 100
    assert report["reasons"] == {"column 'tenure_months' outside [0.0, 120.0]": 100}
    quarantine = pd.read_parquet(report["quarantine"])
    assert len(quarantine) == 100 and quarantine["_reject_reason"].notna().all()


def test_unseen_label_value_is_quarantined_not_read_as_negative(churn, tmp_path):
    frame = make_churn_table(1000, seed=7)
    frame.loc[frame.sample(frac=0.1, random_state=1).index, "Churn"] = "Maybe"
    message, report = poisoned(churn, tmp_path, frame)
    assert "outside the expected set ['No', 'Yes']" in message
    assert report["rows_quarantined"] == 100


def test_no_raw_birth_year_or_phone_number_reaches_any_file(churn):
    """Raw requests carry phone numbers (dropped) and birth years (generalized): neither
    may reach the capture, a report, MLflow, lineage or Ray's logs. The drift reference
    holds generalized bands, so the capture must too."""
    import re

    from raymlops.serving.deploy import flush_capture
    from tests.pii_scan import scan_for, session_logs

    summary, workdir = churn["summary"], churn["workdir"]
    production = make_churn_table(300, seed=12).drop(columns=["Churn"])
    for start in range(0, 300, 50):
        records = json.loads(production.iloc[start:start + 50].to_json(orient="records"))
        answer = requests.post(summary["endpoint"], json={"dataframe_records": records},
                               timeout=30)
        assert answer.status_code == 200, answer.text
    flush_capture("churn", [summary["model_version"]])
    captured = pd.concat(pd.read_parquet(p) for p in (workdir / "capture").rglob("*.parquet"))
    assert len(captured) >= 300
    assert captured["birth_year"].str.fullmatch(r"\d{4}-\d{4}").all()
    assert "phone" not in captured.columns

    training = make_churn_table(4000, seed=11)
    phones = [*production["phone"], *training["phone"].head(500)]
    found = scan_for(phones, workdir, skip=[workdir / "churn-data"],
                     extra=[session_logs()],
                     columns={"birth_year": re.compile(r"^(19|20)\d\d(\.0)?$")})
    assert found.hits == [], found.hits[:5]
    assert found.parquet_files > 5
