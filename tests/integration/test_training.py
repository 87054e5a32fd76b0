"""Training on Ray Train and Ray Tune, tracked in MLflow: torch and XGBoost, both tasks.

The data goes through the real preprocess stage (Ray Data), training through the real
trainers on the session's Ray, tracking through MLflow on SQLite.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from raymlops.errors import RetryableError, TrainingError
from raymlops.names import LABEL
from tests.training_helpers import config_key
from tests.training_helpers import train_config as _config
from tests.training_helpers import train_on as _train

pytestmark = pytest.mark.integration


def _test_rows(prepared) -> pd.DataFrame:
    """The test split as ``read_parquet`` gives it: Arrow-backed strings with holes, which
    MLflow's schema enforcement once turned into the text '<NA>' (the model's signature
    now takes them as they are)."""
    return pd.read_parquet(prepared["prep"].test, dtype_backend="pyarrow")


def _test_auc(prepared, model_uri: str) -> float:
    test = _test_rows(prepared)
    model = mlflow.pyfunc.load_model(model_uri)
    scores = np.asarray(model.predict(test.drop(columns=[LABEL])))
    assert scores.min() >= 0.0 and scores.max() <= 1.0
    return float(roc_auc_score(test[LABEL], scores))


@pytest.fixture(scope="module")
def torch_model(prepared):
    config = _config("torch", params={"epochs": 6, "batch_size": 256, "patience": 2})
    result, ws, _ = _train(prepared, config, "torch-a")
    return result, ws


def test_torch_mlp_trains_tracks_and_loads_as_pyfunc(prepared, torch_model):
    result, ws = torch_model
    mlflow.set_tracking_uri(ws.mlflow_uri)
    run = mlflow.MlflowClient().get_run(result.mlflow_run_id)
    # per-epoch history in MLflow, with the seeds and the architecture
    history = mlflow.MlflowClient().get_metric_history(result.mlflow_run_id, "valid_loss")
    assert 1 <= len(history) <= 6 and [m.step for m in history] == list(range(len(history)))
    assert run.data.params["seed.train"] == "42" and "torch.lr" in run.data.params
    assert '"cardinalities"' in run.data.params["torch.spec"]
    assert _test_auc(prepared, result.model_uri) > 0.6
    # the model folder holds the weights and the architecture, not the checkpoint state
    assert sorted(p.name for p in Path(result.model_dir).iterdir()) == ["model.json", "model.pt"]


def test_mlflow_models_serve_answers_like_the_pyfunc(prepared, torch_model):
    """``mlflow models serve`` (MLflow's own scoring server) on the logged model."""
    import os
    import subprocess
    import sys
    import time

    import requests

    from tests.conftest import free_port

    result, ws = torch_model
    port = free_port()
    # as in an activated virtualenv: MLflow starts the server as `exec uvicorn ...`
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": ws.mlflow_uri, "PATH": path}
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", result.model_uri, "-p",
         str(port), "--env-manager", "local", "--host", "127.0.0.1"], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and server.poll() is None:
            try:
                if requests.get(f"http://127.0.0.1:{port}/ping", timeout=2).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.5)
        assert server.poll() is None, server.stderr.read().decode()[-2000:] if server.stderr \
            else "mlflow models serve exited"
        rows = _test_rows(prepared).drop(columns=[LABEL]).head(20)
        answer = requests.post(f"http://127.0.0.1:{port}/invocations", timeout=30,
                               json={"dataframe_split": json.loads(rows.to_json(
                                   orient="split", index=False))})
        assert answer.status_code == 200, answer.text
        served = np.asarray(answer.json()["predictions"], dtype=float)
        mlflow.set_tracking_uri(ws.mlflow_uri)
        local = np.asarray(mlflow.pyfunc.load_model(result.model_uri).predict(rows))
        np.testing.assert_allclose(served, local, rtol=1e-5)
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_torch_is_reproducible_with_the_same_seed(prepared):
    config = _config("torch", params={"epochs": 2, "batch_size": 256})
    first, _, _ = _train(prepared, config, "torch-r1")
    second, _, _ = _train(prepared, config, "torch-r2")
    assert first.final_metrics["valid_loss"] == pytest.approx(
        second.final_metrics["valid_loss"], rel=1e-6, abs=1e-9)


def test_xgboost_regression_and_reproducibility(prepared):
    config = _config("xgboost", task="regression", params={"num_boost_round": 30})
    # regression on the 0/1 label: the loop only needs a numeric target
    first, _, _ = _train(prepared, config, "xgb-reg-1")
    history = mlflow.MlflowClient().get_metric_history(first.mlflow_run_id, "valid_rmse")
    assert len(history) == 30  # every round, logged from the history after the fit
    second, _, _ = _train(prepared, config, "xgb-reg-2")
    assert first.final_metrics["valid_rmse"] < 0.5
    assert first.final_metrics["valid_rmse"] == second.final_metrics["valid_rmse"]


def test_tuning_runs_trials_nested_under_the_parent_run(prepared):
    config = _config("xgboost", params={"num_boost_round": 20}, checkpoint={"frequency": 5},
                     tune={"search_space": {"max_depth": {"choice": [2, 6]},
                                            "eta": {"loguniform": [0.05, 0.3]}},
                           "num_samples": 3, "max_concurrent": 1,
                           "scheduler": {"grace_period": 1, "reduction_factor": 2}})
    result, _, experiment_id = _train(prepared, config, "tune-a")
    client = mlflow.MlflowClient()
    children = client.search_runs(
        [experiment_id], f"tags.`mlflow.parentRunId` = '{result.mlflow_run_id}'")
    assert len(children) == 3
    assert {c.data.tags["raymlops.trial_status"] for c in children} <= {"FINISHED",
                                                                        "STOPPED_EARLY"}
    best = [c for c in children if c.data.tags["raymlops.best_trial"] == "true"]
    assert len(best) == 1
    finished = [c for c in children if c.data.tags["raymlops.trial_status"] == "FINISHED"]
    # the best trial has the lowest last validation logloss among the finished ones
    assert best[0].data.metrics["valid_logloss"] == pytest.approx(
        min(c.data.metrics["valid_logloss"] for c in finished))
    assert result.params["max_depth"] == int(best[0].data.params["max_depth"])
    assert _test_auc(prepared, result.model_uri) > 0.6

    # a rerun of the same run restores the Tune experiment: the same trials, not new ones
    again, _, _ = _train(prepared, config, "tune-a")
    assert again.tuning["trials"].keys() == result.tuning["trials"].keys()
    assert again.tuning["best_trial"] == result.tuning["best_trial"]
    children = client.search_runs(
        [experiment_id], f"tags.`mlflow.parentRunId` = '{again.mlflow_run_id}'")
    assert len(children) == 3

    # other tuning settings under the same name (the driver's key missed a change):
    # the recorded settings differ, so the old experiment is not restored
    fewer = _config("xgboost", params={"num_boost_round": 20}, checkpoint={"frequency": 5},
                    tune={**config.train.tune.model_dump(mode="json"), "num_samples": 1})
    third, _, _ = _train(prepared, fewer, "tune-a", attempt_key=config_key(config))
    assert len(third.tuning["trials"]) == 1
    assert not third.tuning["trials"].keys() & result.tuning["trials"].keys()
    assert third.ray_run_name.startswith(f"{result.ray_run_name}-s")


def test_xgboost_early_stopping_serves_and_reports_the_best_iteration(prepared):
    config = _config("xgboost", params={"eta": 0.3, "num_boost_round": 300,
                                        "early_stopping_rounds": 3})
    result, ws, _ = _train(prepared, config, "xgb-early")
    final = result.final_metrics
    best = result.best_iteration
    assert best is not None and final["best_iteration"] == best
    assert final["stopped_early"] == 1
    assert final["rounds"] == best + 1 + 3 < 300  # stopped, and boosted no further
    # the recorded metrics are the best iteration's, the last round's kept apart
    mlflow.set_tracking_uri(ws.mlflow_uri)
    watched = mlflow.MlflowClient().get_metric_history(result.mlflow_run_id, "valid_auc")
    by_step = {m.step: m.value for m in watched}
    assert len(by_step) == final["rounds"]
    assert final["valid_auc"] == pytest.approx(by_step[best])
    assert by_step[best] == max(by_step.values())  # auc, the last eval metric, maximized
    assert final["last_valid_auc"] == pytest.approx(by_step[final["rounds"] - 1])

    # the served model predicts with the trees up to the best iteration
    rows = _test_rows(prepared).drop(columns=[LABEL])
    loaded = mlflow.pyfunc.load_model(result.model_uri)
    served = np.asarray(loaded.predict(rows), dtype=float)
    inner = loaded.unwrap_python_model()
    assert inner.meta["best_iteration"] == best
    matrix = inner.features.transform(rows, raw=True)
    assert inner.booster.num_boosted_rounds() == final["rounds"]
    at_best = inner.booster.inplace_predict(matrix, iteration_range=(0, best + 1))
    np.testing.assert_allclose(served, at_best, rtol=1e-6)
    every_tree = inner.booster.inplace_predict(matrix)
    assert np.abs(served - every_tree).max() > 1e-4

    # a rerun of the same run resumes the early-stopped checkpoint: no more rounds
    again, _, _ = _train(prepared, config, "xgb-early", workdir=ws.root)
    assert again.final_metrics["resumed_from_round"] == final["rounds"]
    assert again.final_metrics["rounds"] == final["rounds"]
    assert again.best_iteration == best
    assert again.final_metrics["valid_auc"] == final["valid_auc"]


def test_changed_params_never_resume_another_runs_checkpoint(prepared):
    shallow = _config("xgboost", params={"num_boost_round": 8, "max_depth": 3})
    deep = _config("xgboost", params={"num_boost_round": 8, "max_depth": 4})
    first, ws, _ = _train(prepared, shallow, "xgb-same-id")
    second, _, _ = _train(prepared, deep, "xgb-same-id", workdir=ws.root)
    assert first.ray_run_name != second.ray_run_name
    assert second.final_metrics["resumed_from_round"] == 0  # not max_depth 3's trees
    assert second.final_metrics["rounds"] == 8
    runs = {p.name for p in (ws.root / "ray_results").iterdir()}
    assert {first.ray_run_name, second.ray_run_name} <= runs


def test_invalid_xgboost_param_is_a_training_error_not_retryable(prepared):
    config = _config("xgboost", params={"num_boost_round": 5, "max_depth": -1},
                     failure={"max_failures": 0})
    with pytest.raises(TrainingError, match=r"XGBoostError: .*max_depth.*train\.params") as err:
        _train(prepared, config, "xgb-bad-param")
    assert not isinstance(err.value, RetryableError)
    assert err.value.exit_code == 10


def test_torch_model_runs_the_whole_pipeline_and_serves(ray_session, serve_port, tmp_path):
    """The torch MLP through evaluate, register and a live Serve replica, by config."""
    import requests

    from raymlops import Pipeline, load_config
    from raymlops.data.demo import make_lending_table, write_demo_data

    data = write_demo_data(tmp_path / "demo-data", rows=3000, production_rows=300)
    config = load_config({
        "project": "torch",
        "data": {"source": str(data["train"]), "target": "defaulted", "task": "classification",
                 "pii": {"email": "drop"}},
        "train": {"framework": "torch", "params": {"epochs": 4, "batch_size": 256}},
        "gates": {"min": {"roc_auc": 0.6}},
        "deploy": {"name": "torch-model", "port": serve_port},
    })
    summary = Pipeline(config, workdir=tmp_path / "w").run()
    try:
        assert summary.status == "succeeded" and summary.gate["passed"]
        rows = make_lending_table(3, seed=5).drop(columns=["defaulted"])
        answer = requests.post(summary.endpoint, timeout=30,
                               json={"dataframe_records": rows.to_dict("records")})
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        assert len(predictions) == 3 and all(0.0 < p < 1.0 for p in predictions)
        assert answer.headers["X-Model-Version"] == summary.model_version
    finally:
        from ray import serve

        serve.delete("torch-model")
