"""Which way each metric is better, and which metric a tuning run may select on.

One table covers XGBoost's built-in eval metrics (3.2, ``src/metric``), what the torch
loop reports, and the evaluation stage's holdout metrics. Names may carry a split
prefix (``valid_``, ``train_``, ``test_``), a ``last_`` or ``best_`` prefix (the
XGBoost loop's last-round values, the torch loop's ``best_valid_loss``) and an XGBoost
``@`` parameter (``error@0.7``, ``ndcg@5``, ``map@10-``, ``tweedie-nloglik@1.5``).

``tune_objective`` checks ``train.tune.metric`` before any trial starts: a name the
table does not know, or one the configured framework and params never report (say
``valid_aucpr`` while ``eval_metric`` has no ``aucpr``), is a ``ConfigError``; a
wrong metric would otherwise pick the worst trial, or fail every trial at the end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from raymlops.errors import ConfigError

if TYPE_CHECKING:
    from raymlops.config import PipelineConfig

Direction = Literal["min", "max"]

#: XGBoost's built-in eval metrics by their base name. ``ndcg-`` and ``map-`` score a
#: query without relevant documents as 0 instead of 1.
XGBOOST_METRICS: dict[str, Direction] = {
    "rmse": "min", "rmsle": "min", "mae": "min", "mape": "min", "mphe": "min",
    "logloss": "min", "error": "min", "merror": "min", "mlogloss": "min",
    "auc": "max", "aucpr": "max", "pre": "max", "ndcg": "max", "map": "max",
    "ndcg-": "max", "map-": "max",
    "poisson-nloglik": "min", "gamma-nloglik": "min", "cox-nloglik": "min",
    "gamma-deviance": "min", "tweedie-nloglik": "min", "aft-nloglik": "min",
    "interval-regression-accuracy": "max", "quantile": "min",
}
#: XGBoost metrics whose ``@`` parameter the eval log drops from the name
#: (``aucpr@3`` is logged as ``aucpr``); the others keep it (``pre@3``, ``error@0.7``).
_XGBOOST_UNNAMED_PARAMETER = frozenset({"auc", "aucpr", "mphe"})

#: What the torch loop reports per epoch (``valid_``/``train_`` prefixed).
TORCH_METRICS: dict[str, Direction] = {"loss": "min", "logloss": "min", "auc": "max",
                                       "rmse": "min"}

#: The evaluation stage's holdout metrics (``raymlops.evaluation.metrics``).
EVALUATION_METRICS: dict[str, Direction] = {
    "accuracy": "max", "precision": "max", "recall": "max", "f1": "max",
    "roc_auc": "max", "pr_auc": "max", "log_loss": "min", "brier": "min", "ece": "min",
    "rmse": "min", "mae": "min", "r2": "max",
}

METRICS: dict[str, Direction] = {**EVALUATION_METRICS, **TORCH_METRICS, **XGBOOST_METRICS}

_SPLITS = ("valid_", "train_", "test_")
_VALUE_PREFIXES = ("last_", "best_")


def base_name(name: str) -> str:
    """The table's key for a reported name: prefixes and the ``@`` parameter removed,
    the ``-`` variant of ``ndcg@n-``/``map@n-`` kept."""
    for prefix in _VALUE_PREFIXES:
        if name.startswith(prefix) and name.removeprefix(prefix).startswith(_SPLITS):
            name = name.removeprefix(prefix)
            break
    for prefix in _SPLITS:
        if name.startswith(prefix):
            name = name.removeprefix(prefix)
            break
    base, at, parameter = name.partition("@")
    if at and parameter.endswith("-"):
        return f"{base}-"
    return base


def direction(name: str) -> Direction | None:
    """``"min"`` or ``"max"`` for a known metric name (any prefix or suffix), else None."""
    return METRICS.get(base_name(name))


def xgboost_logged_name(metric: str) -> str:
    """The key XGBoost's eval log gives an ``eval_metric`` entry."""
    base, at, _ = metric.partition("@")
    return base if at and base in _XGBOOST_UNNAMED_PARAMETER else metric


def eval_metrics(params: dict[str, Any]) -> list[str]:
    """``eval_metric`` of merged XGBoost params, as a list, in XGBoost's order."""
    value = params.get("eval_metric")
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]


def reported_metrics(config: PipelineConfig) -> list[str]:
    """Every metric name a training run of this config reports to Ray Train and Tune."""
    train = config.train
    has_valid = config.data.split.valid_fraction > 0
    if train.framework == "xgboost":
        from raymlops.training.xgboost_loop import xgboost_params

        params, _, early = xgboost_params(config.data.task, train.params, seed=train.seed,
                                          use_gpu=False, nthread=1)
        names = [xgboost_logged_name(m) for m in eval_metrics(params)]
        splits = ["train", "valid"] if has_valid else ["train"]
        reported = [f"{split}_{n}" for split in splits for n in names]
        if early and has_valid:
            reported += [f"last_{name}" for name in reported]
        return reported
    names = ["loss", "logloss", "auc"] if config.data.task == "classification" else \
        ["loss", "rmse"]
    return [*(f"valid_{n}" for n in names if has_valid), "train_loss", "best_valid_loss"]


def _default_metric(config: PipelineConfig, reported: list[str]) -> str:
    preferred = "valid_logloss" if config.data.task == "classification" else "valid_rmse"
    if preferred in reported:
        return preferred
    valid = [m for m in reported if m.startswith("valid_")]
    if valid:
        # XGBoost's early-stopping choice: the last eval metric on the validation set
        return valid[-1] if config.train.framework == "xgboost" else valid[0]
    raise ConfigError("train.tune.metric: no validation metric is reported "
                      f"(data.split.valid_fraction is {config.data.split.valid_fraction}); "
                      f"give one of {', '.join(reported)}, or a validation split")


def tune_objective(config: PipelineConfig) -> tuple[str, Direction]:
    """The metric that picks the best tuning trial, and whether lower or higher wins.

    ``train.tune.mode`` overrides the table's direction. Raises ``ConfigError`` naming
    ``train.tune.metric`` for a metric that is unknown or never reported.
    """
    tune = config.train.tune
    reported = reported_metrics(config)
    metric = tune.metric if tune is not None and tune.metric else _default_metric(config,
                                                                                  reported)
    found = direction(metric)
    if found is None:
        raise ConfigError(f"train.tune.metric: {metric!r} is not a metric raymlops knows; "
                          f"with this config the trials report {', '.join(reported)}")
    if metric not in reported:
        hint = ""
        if base_name(metric) in XGBOOST_METRICS and config.train.framework == "xgboost":
            hint = " (add it to train.params.eval_metric)"
        if metric.startswith("valid_") and config.data.split.valid_fraction == 0:
            hint = " (data.split.valid_fraction is 0: there is no validation split)"
        raise ConfigError(f"train.tune.metric: {config.train.framework} never reports "
                          f"{metric!r} for a {config.data.task} run with these train.params"
                          f"{hint}; the trials report {', '.join(reported)}")
    mode: Direction = tune.mode if tune is not None and tune.mode else found
    return metric, mode
