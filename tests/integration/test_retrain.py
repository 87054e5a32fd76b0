"""``raymlops retrain MODEL/VERSION``: the same recorded inputs give the same model.

A real pipeline run registers version 1; retraining it through the CLI reads the
recorded config and data snapshot, checks the digest, and registers version 2 with
the same test metrics. A snapshot changed after the fact is refused.
"""

from __future__ import annotations

import contextlib
import io
import json

import mlflow
import pytest

from raymlops import Pipeline, load_config
from raymlops.cli import main
from raymlops.data.demo import write_demo_data
from raymlops.errors import DataError

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def first_run(ray_session, serve_port, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("retrain")
    data = write_demo_data(workdir / "demo-data", rows=3000, production_rows=300)
    config = load_config({
        "project": "retrain",
        "data": {"source": str(data["train"]), "target": "defaulted", "task": "classification",
                 "pii": {"email": "hash", "age": "generalize"}},
        "train": {"framework": "xgboost", "params": {"num_boost_round": 30}, "seed": 7},
        "deploy": {"name": "retrain-model", "port": serve_port},
    })
    summary = Pipeline(config, workdir=workdir, run_id="first").run()
    yield {"workdir": workdir, "summary": summary}
    from ray import serve

    serve.delete("retrain-model")


def _cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue()


def test_retrain_reproduces_the_version_from_its_records(first_run):
    workdir = first_run["workdir"]
    code, out = _cli("retrain", "retrain-model/1", "--workdir", str(workdir), "--json")
    assert code == 0, out
    result = json.loads(out)
    assert result["summary"]["model_version"] == "2"
    assert result["source"]["run_id"] == "first"
    # the same seed, data and config: the same test metrics (XGBoost on CPU is exact)
    assert result["metric_diffs"] and result["max_abs_diff"] < 1e-9
    versions = mlflow.MlflowClient().search_model_versions("name='retrain-model'")
    digests = {str(v.version): v.tags["raymlops.dataset_digest"] for v in versions}
    assert digests["1"] == digests["2"] == result["source"]["digest"]
    code, out = _cli("lineage", "retrain-model/2", "--workdir", str(workdir), "--json")
    checked = [s for s in json.loads(out)["steps"] if s["kind"] == "retrain_data_checked"]
    assert checked and checked[0]["payload"]["same"] is True
    assert checked[0]["payload"]["retrain_of"] == "retrain-model/1"


def test_retrain_refuses_a_snapshot_that_changed(first_run):
    workdir = first_run["workdir"]
    snapshot = workdir / "runs" / "first" / "data" / "snapshot"
    victim = sorted(snapshot.glob("*.parquet"))[0]
    backup = victim.read_bytes()
    victim.unlink()  # rows lost from the recorded data
    try:
        before = len(mlflow.MlflowClient().search_model_versions("name='retrain-model'"))
        code, _ = _cli("retrain", "retrain-model/1", "--workdir", str(workdir))
        assert code == DataError.exit_code
        after = len(mlflow.MlflowClient().search_model_versions("name='retrain-model'"))
        assert after == before  # nothing registered from the wrong data
    finally:
        victim.write_bytes(backup)
