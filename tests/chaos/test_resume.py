"""Fault injection: the driver dies between a side effect and its record, then resumes.

The failure is injected into our own lineage store at the worst moment: after MLflow
registered the version, before the stage record is written. MLflow, Ray and Serve are
real. The resumed run must find the version it made, not register a second one.
"""

from __future__ import annotations

import mlflow
import pytest

from raymlops import Pipeline, load_config
from raymlops.data.demo import write_demo_data
from raymlops.errors import GateRejectedError
from raymlops.lineage.store import LineageStore

pytestmark = pytest.mark.integration


class Crash(RuntimeError):
    pass


def test_crash_after_registration_resumes_without_a_duplicate(ray_session, serve_port,
                                                              tmp_path, monkeypatch):
    workdir = tmp_path / "w"
    data = write_demo_data(workdir / "demo-data", rows=3000, production_rows=300)
    config = load_config({
        "project": "chaos",
        "data": {"source": str(data["train"]), "target": "defaulted", "task": "classification",
                 "id_column": "email", "pii": {"email": "drop"}},
        "train": {"framework": "xgboost", "params": {"num_boost_round": 20}},
        "deploy": {"name": "chaos-model", "port": serve_port},
    })
    real_record = LineageStore.record_stage

    def crash_on_register(self, run_id, stage, **kwargs):
        if stage == "register":
            raise Crash("driver killed right after the registry call")
        return real_record(self, run_id, stage, **kwargs)

    monkeypatch.setattr(LineageStore, "record_stage", crash_on_register)
    with pytest.raises(Crash):
        Pipeline(config, workdir=workdir, run_id="chaos-1").run()
    client = mlflow.MlflowClient()
    assert len(client.search_model_versions("name='chaos-model'")) == 1
    store = LineageStore(f"sqlite:///{workdir / 'lineage.db'}")
    assert store.get_stage("chaos-1", "register") is None  # the crash lost the record
    assert store.get_stage("chaos-1", "train") is not None

    monkeypatch.setattr(LineageStore, "record_stage", real_record)
    summary = Pipeline(config, workdir=workdir, run_id="chaos-1").run()
    assert summary.status == "succeeded"
    assert summary.stages["train"]["status"] == "reused"
    assert summary.stages["register"]["status"] == "ran"
    versions = client.search_model_versions("name='chaos-model'")
    assert [str(v.version) for v in versions] == ["1"]
    assert summary.model_version == "1"
    registered = store.events(run_id="chaos-1", kind="model_registered")
    assert [e.payload["created"] for e in registered] == [False]  # the lost record's event
    from ray import serve

    serve.delete("chaos-model")  # give its replicas' CPUs back to the other tests


def test_resume_with_a_changed_training_parameter_serves_the_new_model(ray_session, serve_port,
                                                                      tmp_path):
    """`raymlops run --run-id X --set train.params.max_depth=...` used to retrain, then
    register and serve the OLD version, while summary and lineage carried new metrics."""
    import json

    import numpy as np
    import pandas as pd
    import requests

    from raymlops.lineage.query import chain_for

    workdir = tmp_path / "w"
    data = write_demo_data(workdir / "demo-data", rows=3000, production_rows=300)
    base = {
        "project": "resume",
        "data": {"source": str(data["train"]), "target": "defaulted", "task": "classification",
                 "id_column": "email", "pii": {"email": "hash"}},
        "train": {"framework": "xgboost", "params": {"num_boost_round": 20, "max_depth": 2}},
        "deploy": {"name": "resume-model", "port": serve_port},
    }
    first = Pipeline(load_config(base), workdir=workdir, run_id="resume-1").run()
    assert first.model_version == "1"
    changed = load_config(base, {"train.params.max_depth": 6})
    second = Pipeline(changed, workdir=workdir, run_id="resume-1").run()
    try:
        for name in ("ingest", "validate", "preprocess"):
            assert second.stages[name]["status"] == "reused"
        for name in ("train", "evaluate", "register", "deploy"):
            assert second.stages[name]["status"] == "ran", (name, second.stages)
        assert second.model_version == "2"
        assert second.metrics != first.metrics

        client = mlflow.MlflowClient()
        v1, v2 = (client.get_model_version("resume-model", v) for v in ("1", "2"))
        assert v1.run_id != v2.run_id
        assert client.get_run(v2.run_id).data.params["xgb.max_depth"] == "6"
        assert str(client.get_model_version_by_alias("resume-model", "champion").version) == "2"

        # the served version is the new model: same scores as version 2's pyfunc, not 1's
        rows = pd.read_csv(data["production"]).drop(columns=["defaulted"]).head(30)
        answer = requests.post(second.endpoint, timeout=30, json={
            "dataframe_records": json.loads(rows.to_json(orient="records"))})
        assert answer.status_code == 200 and answer.headers["X-Model-Version"] == "2"
        served = np.array(answer.json()["predictions"])
        new = np.asarray(mlflow.pyfunc.load_model("models:/resume-model/2").predict(rows))
        old = np.asarray(mlflow.pyfunc.load_model("models:/resume-model/1").predict(rows))
        np.testing.assert_allclose(served, new, atol=1e-6)
        assert np.abs(served - old).max() > 1e-3

        # Ray Train did not resume the old checkpoint: a run name per set of inputs
        names = sorted(p.name for p in (workdir / "ray_results").iterdir())
        assert len([n for n in names if n.startswith("train-resume-1-")]) == 2, names

        # lineage: each version's chain is its own; no stage that was reused emitted again
        store = LineageStore(f"sqlite:///{workdir / 'lineage.db'}")
        kinds = [e.kind for e in store.events(run_id="resume-1")]
        for kind in ("dataset_ingested", "data_validated", "features_fitted"):
            assert kinds.count(kind) == 1, kinds
        for kind in ("model_trained", "gate_verdict", "model_registered", "model_deployed"):
            assert kinds.count(kind) == 2, kinds
        for version, summary, registered in (("1", first, v1), ("2", second, v2)):
            chain = {s["kind"]: s["payload"] for s in
                     chain_for(store, "resume-model", version)["steps"]}
            assert chain["model_trained"]["mlflow_run_id"] == registered.run_id
            assert chain["gate_verdict"]["metrics"] == summary.metrics
        deployed = store.events(run_id="resume-1", kind="model_deployed")[-1]
        assert deployed.model_version == "2" and deployed.payload["previous_weights"] == {
            "1": 100.0}

        # one value of the data changes: every stage below ingest reruns (the digests
        # chain), though validate's outputs are the same paths and counts as before
        # (a gate no model meets stops it after evaluate: what is checked here is which
        # stages ran, and deploying again would only cost the suite time)
        second_digests = {name: store.get_stage("resume-1", name).input_digest
                          for name in ("ingest", "validate", "preprocess", "train",
                                       "register", "evaluate")}
        frame = pd.read_csv(data["train"])
        frame.loc[5, "income"] = float(frame["income"].max()) * 3
        frame.to_csv(data["train"], index=False)
        strict = load_config(base, {"train.params.max_depth": 6, "gates.min.roc_auc": 0.999})
        with pytest.raises(GateRejectedError):
            Pipeline(strict, workdir=workdir, run_id="resume-1").run()
        for name, before in second_digests.items():  # each reran, on new inputs
            assert store.get_stage("resume-1", name).input_digest != before, name
        assert client.get_model_version("resume-model", "3").tags["raymlops.gate"] == \
            "rejected"
        assert str(client.get_model_version_by_alias("resume-model", "champion").version) == "2"
        digests = [e.dataset_digest for e in store.events(run_id="resume-1",
                                                          kind="dataset_ingested")]
        assert len(digests) == 2 and digests[0] != digests[1]
        trained = store.events(run_id="resume-1", kind="model_trained")
        assert trained[-1].dataset_digest == digests[1]
    finally:
        from ray import serve

        serve.delete("resume-model")
