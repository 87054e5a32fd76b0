"""Training and serving see the same row: a deliberately messy table, scored three ways.

The table has padded strings, blank numbers, numbers stored as text, a float-coded
category with holes (the CSV holds ``2.0``), a hashed PII column used as a feature and,
at serving, a category training never saw. The same raw rows are scored through HTTP
as JSON (records and split, the way a client writes them), through
``mlflow.pyfunc.load_model(...).predict`` on the CSV read with pandas, and through the
evaluation path (Ray Data reading the CSV); the three must agree within 1e-6. Before the
one row normalization, a region-2 row scored 0.89 in evaluation and 0.09 over HTTP.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests

from raymlops import Pipeline, load_config

pytestmark = pytest.mark.integration

PLANS = [" basic", "basic ", "premium", "Premium "]


def messy_table(rows: int, seed: int, *, unseen: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    region = rng.choice([1.0, 2.0, 3.0, np.nan], rows, p=[0.35, 0.3, 0.3, 0.05])
    plan = rng.choice(PLANS + (["platinum"] if unseen else []), rows)
    tenure = rng.integers(0, 60, rows).astype(float)
    tenure[rng.random(rows) < 0.05] = np.nan
    charges = np.round(rng.normal(60, 15, rows), 2)
    account = rng.choice([f"ACC-{i:02d}" for i in range(8)], rows)
    z = (-1.5 + 3.0 * (region == 2.0) - 0.03 * np.nan_to_num(tenure)
         + 0.8 * np.isin(plan, [" basic", "basic "]) + 0.6 * (account == "ACC-03")
         + rng.normal(0, 0.5, rows))
    churned = np.where(rng.random(rows) < 1 / (1 + np.exp(-z)), "Yes", "No")
    text_charges = [("" if rng.random() < 0.05 else (f" {c} " if rng.random() < 0.3
                                                       else str(c))) for c in charges]
    return pd.DataFrame({"customer_id": [f"C{seed}-{i}" for i in range(rows)],
                         "region": region, "plan": plan, "tenure": tenure,
                         "charges": text_charges, "account": account, "churned": churned})


def _client_value(text: str, column: str):
    """A value as a client's JSON would carry it: numbers as numbers, blanks as null,
    the float-coded region as the integer a client sends, text as it is."""
    if text.strip() == "":
        return None
    if column == "region":
        return int(float(text))
    if column in ("tenure",):
        return float(text)
    return text


@pytest.fixture(scope="module")
def messy(ray_session, serve_port, tmp_path_factory):
    root = tmp_path_factory.mktemp("messy")
    messy_table(3000, 1).to_csv(root / "train.csv", index=False)
    serving = messy_table(120, 2, unseen=True).drop(columns=["churned"])
    serving.to_csv(root / "serving.csv", index=False)
    config = load_config({
        "project": "parity",
        "data": {"source": str(root / "train.csv"), "target": "churned",
                 "task": "classification", "positive_label": "Yes",
                 "id_column": "customer_id",
                 "numeric": ["tenure", "charges"],
                 "categorical": ["region", "plan", "account"],
                 "pii": {"account": "hash"}},
        "train": {"framework": "xgboost", "params": {"num_boost_round": 40, "max_depth": 3}},
        "deploy": {"name": "parity", "port": serve_port},
    })
    summary = Pipeline(config, workdir=root / "w").run()
    yield {"root": root, "summary": summary, "workdir": root / "w", "config": config}
    from ray import serve

    serve.delete("parity")


def _raw_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_three_paths_agree_on_the_messy_rows(messy):
    from raymlops._internal.io import read_table
    from raymlops.evaluation.evaluate import SCORE, score_table

    summary, path = messy["summary"], messy["root"] / "serving.csv"
    raw = _raw_rows(path)
    columns = list(raw[0])
    records = [{c: _client_value(r[c], c) for c in columns} for r in raw]
    by_records = requests.post(summary.endpoint, json={"dataframe_records": records}, timeout=60)
    assert by_records.status_code == 200, by_records.text
    # the same rows as the file's own texts, padding and blanks included
    split = {"columns": columns, "data": [[r[c] for c in columns] for r in raw]}
    by_split = requests.post(summary.endpoint, json={"dataframe_split": split}, timeout=60)
    assert by_split.status_code == 200, by_split.text
    # and the Open Inference Protocol (KServe v2): one BYTES tensor per column, as text
    tensors = [{"name": c, "datatype": "BYTES", "shape": [len(raw)],
                "data": [r[c] for r in raw]} for c in columns]
    oip = summary.endpoint.replace("/invocations", "/v2/models/parity/infer")
    by_oip = requests.post(oip, json={"inputs": tensors}, timeout=60)
    assert by_oip.status_code == 200, by_oip.text
    assert by_oip.json()["model_version"] == summary.model_version

    mlflow.set_tracking_uri(f"sqlite:///{messy['workdir'] / 'mlflow.db'}")
    uri = f"models:/parity/{summary.model_version}"
    pyfunc = np.asarray(mlflow.pyfunc.load_model(uri).predict(pd.read_csv(path)))

    evaluated = score_table(read_table([str(path)]), model_uri=uri,
                            tracking_uri=f"sqlite:///{messy['workdir'] / 'mlflow.db'}",
                            keep=["customer_id"], raw=True)
    order = {cid: i for i, cid in enumerate(r["customer_id"] for r in raw)}
    evaluation = evaluated.sort_values("customer_id", key=lambda s: s.map(order))[SCORE]

    # and the pipeline's own path: Arrow's CSV reader, ingest's PII policy, validation's
    # row checks (which normalize), then the model on rows it is told are normalized
    import pyarrow.csv as pacsv

    from raymlops.data.rules import RowChecker
    from raymlops.features.pii import Protector, load_pii_key

    model = mlflow.pyfunc.load_model(uri).unwrap_python_model()
    key, _ = load_pii_key(messy["workdir"])
    protected = Protector(messy["config"].data.pii, key)(pacsv.read_csv(path).to_pandas())
    checked = RowChecker(messy["config"].data, model.features.spec)(
        protected.assign(churned="No"))
    assert checked["_reject_reason"].isna().all()
    pipeline_path = model.predict_frame(checked, raw=False)

    records_scores = np.array(by_records.json()["predictions"])
    np.testing.assert_allclose(records_scores, np.array(by_split.json()["predictions"]),
                               atol=1e-6)
    np.testing.assert_allclose(records_scores, pyfunc, atol=1e-6)
    np.testing.assert_allclose(records_scores, evaluation.to_numpy(), atol=1e-6)
    np.testing.assert_allclose(records_scores, pipeline_path, atol=1e-6)
    np.testing.assert_allclose(records_scores, by_oip.json()["outputs"][0]["data"], atol=1e-6)


def test_the_float_coded_region_and_the_hashed_account_are_known_at_serving(messy):
    """Region 2 is the strongest signal: a client's `2` must hit the category the CSV's
    `2.0` trained, not the unknown bucket; the hashed account too."""
    from raymlops.features import UNKNOWN, FittedFeatures

    run_dir = Path(messy["summary"].summary_path).parent
    fitted = FittedFeatures.load(run_dir / "features.json")
    assert "2" in fitted.vocab["region"] and "2.0" not in fitted.vocab["region"]
    assert "ACC-03" not in fitted.to_json()  # the hash, never the raw value
    endpoint = messy["summary"].endpoint
    base = {"tenure": 10, "charges": "60", "plan": "premium", "account": "ACC-00"}
    scores = {}
    for region in (2, "2", "2.0", 2.0, 1):
        answer = requests.post(endpoint, timeout=30, json={"dataframe_records": [
            {"customer_id": "x", **base, "region": region}]})
        assert answer.status_code == 200, answer.text
        scores[repr(region)] = answer.json()["predictions"][0]
    assert len({round(scores[k], 9) for k in ("2", "'2'", "'2.0'", "2.0")}) == 1
    assert scores["2"] > scores["1"] + 0.2
    codes = fitted.with_key(None).load_key().encode(pd.DataFrame(
        [{**base, "region": 2, "account": "ACC-03"}]), raw=True)[1][0]
    vocab_sizes = [len(fitted.vocab[c]) for c in fitted.categorical]
    assert all(code < size for code, size in zip(codes, vocab_sizes, strict=True)), UNKNOWN


def test_a_record_missing_a_column_is_named_with_its_row(messy):
    rows = [{"customer_id": "a", "region": 2, "plan": "basic", "tenure": 3, "charges": "5",
             "account": "ACC-01"}] * 2
    rows = [rows[0], {k: v for k, v in rows[1].items() if k != "charges"} | {"chrges": "5"}]
    answer = requests.post(messy["summary"].endpoint, json={"dataframe_records": rows},
                           timeout=30)
    assert answer.status_code == 400
    body = answer.json()
    assert body["field"] == "charges" and body["row"] == 1 and "'chrges'" in body["message"]


def test_the_capture_holds_the_protected_rows(messy):
    from raymlops.serving.deploy import flush_capture

    summary = messy["summary"]
    rows = json.loads(pd.read_csv(messy["root"] / "serving.csv").head(5).to_json(
        orient="records"))
    assert requests.post(summary.endpoint, json={"dataframe_records": rows}, timeout=30).ok
    flush_capture("parity", [summary.model_version])
    files = sorted((messy["workdir"] / "capture" / "parity").rglob("*.parquet"))
    captured = pd.concat([pd.read_parquet(f) for f in files])
    assert not captured["account"].astype(str).str.startswith("ACC-").any()
    assert captured["account"].str.fullmatch(r"[0-9a-f]{64}").all()
