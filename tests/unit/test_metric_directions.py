"""Metric directions from one table, and the tuning metric checked before any trial."""

from __future__ import annotations

import pytest

from raymlops.config import load_config
from raymlops.errors import ConfigError
from raymlops.training.directions import (
    EVALUATION_METRICS,
    METRICS,
    TORCH_METRICS,
    XGBOOST_METRICS,
    base_name,
    direction,
    reported_metrics,
    tune_objective,
    xgboost_logged_name,
)
from raymlops.training.trainer import default_metric

#: Every entry, written out by hand: XGBoost 3.2's eval metrics (doc/parameter.rst,
#: src/metric), the torch loop's reports, the evaluation stage's metrics.
EXPECTED = {
    # xgboost: lower is better
    "rmse": "min", "rmsle": "min", "mae": "min", "mape": "min", "mphe": "min",
    "logloss": "min", "error": "min", "merror": "min", "mlogloss": "min",
    "poisson-nloglik": "min", "gamma-nloglik": "min", "cox-nloglik": "min",
    "gamma-deviance": "min", "tweedie-nloglik": "min", "aft-nloglik": "min",
    "quantile": "min",
    # xgboost: higher is better
    "auc": "max", "aucpr": "max", "pre": "max", "ndcg": "max", "map": "max",
    "ndcg-": "max", "map-": "max", "interval-regression-accuracy": "max",
    # torch loop
    "loss": "min",
    # evaluation
    "accuracy": "max", "precision": "max", "recall": "max", "f1": "max",
    "roc_auc": "max", "pr_auc": "max", "log_loss": "min", "brier": "min", "ece": "min",
    "r2": "max",
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_entry_has_its_direction(name):
    assert direction(name) == EXPECTED[name]
    assert direction(f"valid_{name}") == EXPECTED[name]
    assert direction(f"train_{name}") == EXPECTED[name]


def test_the_table_is_exactly_the_expected_one():
    assert METRICS == EXPECTED
    # the sub-tables agree where they share a name (auc, rmse, logloss, mae)
    for table in (XGBOOST_METRICS, TORCH_METRICS, EVALUATION_METRICS):
        for name, way in table.items():
            assert EXPECTED[name] == way, name


@pytest.mark.parametrize(("name", "expected"), [
    ("valid_aucpr", "max"), ("valid_map", "max"), ("valid_ndcg", "max"),
    ("valid_pre", "max"),  # the old rule (names ending in "auc") called these "min"
    ("valid_error@0.7", "min"), ("train_error@0.2", "min"),
    ("valid_pre@5", "max"), ("valid_ndcg@10", "max"), ("valid_map@3", "max"),
    ("valid_ndcg@10-", "max"), ("valid_map@3-", "max"), ("valid_ndcg-", "max"),
    ("valid_tweedie-nloglik@1.5", "min"), ("valid_mape", "min"),  # not "map"
    ("test_roc_auc", "max"), ("test_log_loss", "min"),
    ("last_valid_logloss", "min"), ("last_valid_auc", "max"), ("best_valid_loss", "min"),
    ("valid_interval-regression-accuracy", "max"),
])
def test_prefixes_and_suffixes(name, expected):
    assert direction(name) == expected


@pytest.mark.parametrize("name", ["valid_nonsense", "accuracy_at_top", "valid_", "",
                                  "valid_positive_rate", "last_logloss_x", "mse"])
def test_unknown_names_have_no_direction(name):
    assert direction(name) is None


def test_base_names_and_xgboost_log_keys():
    assert base_name("valid_ndcg@5-") == "ndcg-"
    assert base_name("last_train_error@0.7") == "error"
    assert base_name("best_valid_loss") == "loss"
    assert base_name("valid_last_thing") == "last_thing"  # "last_" only before a split
    # xgboost drops the parameter of auc@n, aucpr@n and mphe@n from the log key
    assert xgboost_logged_name("aucpr@3") == "aucpr"
    assert xgboost_logged_name("pre@3") == "pre@3"
    assert xgboost_logged_name("error@0.7") == "error@0.7"


def _config(framework="xgboost", task="classification", params=None, tune=None,
            valid_fraction=0.1):
    tune = {"search_space": {"eta": {"uniform": [0.1, 0.3]}}, **(tune or {})}
    return load_config({
        "data": {"source": "x", "target": "y", "task": task,
                 "split": {"valid_fraction": valid_fraction}},
        "train": {"framework": framework, "params": params or {}, "tune": tune},
        "deploy": {"name": "m"}})


def test_defaults_and_the_table_decide_the_mode():
    assert default_metric(_config()) == ("valid_logloss", "min")
    assert default_metric(_config(task="regression")) == ("valid_rmse", "min")
    assert default_metric(_config("torch")) == ("valid_logloss", "min")
    assert default_metric(_config(tune={"metric": "valid_auc"})) == ("valid_auc", "max")
    aucpr = _config(params={"eval_metric": ["logloss", "aucpr"]},
                    tune={"metric": "valid_aucpr"})
    assert default_metric(aucpr) == ("valid_aucpr", "max")
    ndcg = _config(params={"objective": "rank:ndcg", "eval_metric": "ndcg@5"},
                   tune={"metric": "valid_ndcg@5"})
    assert default_metric(ndcg) == ("valid_ndcg@5", "max")
    # without logloss among the eval metrics, the default is the early-stopping one
    assert default_metric(_config(params={"eval_metric": ["error", "aucpr"]})) == (
        "valid_aucpr", "max")


def test_mode_in_the_config_overrides_the_table():
    assert default_metric(_config(tune={"metric": "valid_auc", "mode": "min"})) == (
        "valid_auc", "min")


@pytest.mark.parametrize(("config", "message"), [
    (_config(tune={"metric": "valid_nonsense"}), "not a metric raymlops knows"),
    (_config(tune={"metric": "valid_nonsense", "mode": "max"}), "not a metric raymlops knows"),
    (_config(tune={"metric": "valid_aucpr"}), r"never reports 'valid_aucpr'.*eval_metric"),
    (_config(task="regression", tune={"metric": "valid_auc"}), "never reports 'valid_auc'"),
    (_config("torch", task="regression", tune={"metric": "valid_auc"}), "never reports"),
    (_config("torch", tune={"metric": "valid_aucpr"}), "never reports"),
    (_config(tune={"metric": "valid_roc_auc"}), "never reports"),  # evaluation, not training
    (_config(tune={"metric": "valid_auc"}, valid_fraction=0.0), "valid_fraction is 0"),
    (_config(valid_fraction=0.0), "no validation metric"),
])
def test_a_metric_the_trials_never_report_is_a_config_error(config, message):
    with pytest.raises(ConfigError, match=r"train\.tune\.metric") as caught:
        tune_objective(config)
    assert caught.match(message)


def test_reported_metrics_follow_framework_params_and_split():
    assert reported_metrics(_config()) == ["train_logloss", "train_auc", "valid_logloss",
                                           "valid_auc"]
    assert "last_valid_auc" in reported_metrics(_config(params={"early_stopping_rounds": 5}))
    assert reported_metrics(_config(task="regression", valid_fraction=0.0)) == ["train_rmse"]
    assert set(reported_metrics(_config("torch", task="regression"))) == {
        "valid_loss", "valid_rmse", "train_loss", "best_valid_loss"}
