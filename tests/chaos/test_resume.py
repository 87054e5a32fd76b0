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
        "monitor": {"replay": {"source": str(data["production"]), "rows": 30}},
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
    assert [e.payload["created"] for e in registered] == [False]
    from ray import serve

    serve.delete("chaos-model")  # give its replicas' CPUs back to the other tests
