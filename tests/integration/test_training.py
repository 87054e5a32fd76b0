"""Training on Ray Train and Ray Tune, tracked in MLflow: torch and XGBoost, both tasks.

The data goes through the real preprocess stage (Ray Data), training through the real
trainers on the session's Ray, tracking through MLflow on SQLite.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from raymlops.data.rules import LABEL
from tests.training_helpers import train_config as _config
from tests.training_helpers import train_on as _train

pytestmark = pytest.mark.integration

def _test_auc(prepared, model_uri: str) -> float:
    test = pd.read_parquet(prepared["prep"].test)
    model = mlflow.pyfunc.load_model(model_uri)
    scores = np.asarray(model.predict(test.drop(columns=[LABEL])))
    assert scores.min() >= 0.0 and scores.max() <= 1.0
    return float(roc_auc_score(test[LABEL], scores))


def test_torch_mlp_trains_tracks_and_loads_as_pyfunc(prepared):
    config = _config("torch", params={"epochs": 6, "batch_size": 256, "patience": 2})
    result, _, _ = _train(prepared, config, "torch-a")
    run = mlflow.MlflowClient().get_run(result.mlflow_run_id)
    # per-epoch history in MLflow, with the seeds and the architecture
    history = mlflow.MlflowClient().get_metric_history(result.mlflow_run_id, "valid_loss")
    assert 1 <= len(history) <= 6 and [m.step for m in history] == list(range(len(history)))
    assert run.data.params["seed.train"] == "42" and "torch.lr" in run.data.params
    assert '"cardinalities"' in run.data.params["torch.spec"]
    assert _test_auc(prepared, result.model_uri) > 0.6
    # the model folder holds the weights and the architecture, not the checkpoint state
    assert sorted(p.name for p in Path(result.model_dir).iterdir()) == ["model.json", "model.pt"]


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
