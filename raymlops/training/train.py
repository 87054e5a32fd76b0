"""Train: fit the model on Ray Train, then track it in MLflow as a pyfunc model.

Ray Train and Tune runs are named ``train-{run_id}-{key}`` / ``tune-{run_id}-{key}``,
where ``key`` starts the digest of the stage's inputs (``attempt_key``, from the
driver): a rerun of the same run with the same inputs resumes its checkpoints, and one
with a changed param or new data starts its own run instead of resuming the old one.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from raymlops.config import PipelineConfig
from raymlops.errors import RaymlopsError
from raymlops.features import FittedFeatures
from raymlops.training import tracking
from raymlops.training.trainer import Plan, default_metric, training_failure
from raymlops.training.tune import TuneOutcome, run_tuning
from raymlops.training.xgboost_loop import read_state

log = logging.getLogger(__name__)


class TrainResult(BaseModel):
    mlflow_run_id: str
    model_uri: str
    model_dir: str
    params: dict[str, Any]
    #: the metrics of the model as served: with XGBoost early stopping, those at the
    #: best iteration (``valid_*``), the last round's as ``last_valid_*``
    final_metrics: dict[str, float]
    #: the search's decision, when train.tune ran: best trial, metric, every trial's end
    tuning: dict[str, Any] | None = None
    #: XGBoost with early stopping: the last boosting round the model predicts with
    #: (also in the model's meta.json and in ``final_metrics``); else None
    best_iteration: int | None = None
    #: the Ray Train (or Tune) run name this result came from
    ray_run_name: str | None = None


MODEL_FILES = {"xgboost": ("model.ubj",), "torch": ("model.pt", "model.json")}
HISTORY_FILE = "history.json"


def fit_on_ray(plan: Plan, name: str) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """Fit one trainer; returns (checkpoint dir, per-round/epoch history, final metrics).

    A trainer with the name of an earlier, interrupted fit resumes from its latest
    checkpoint instead of starting over.
    """
    trainer = plan.trainer(name, dict(plan.config.train.params))
    try:
        result = trainer.fit()
    except Exception as exc:
        # RetryableError for a lost worker or node (--run-id resumes), TrainingError
        # for what a retry cannot fix (a parameter value XGBoost rejects)
        raise training_failure(exc) from exc
    if result.checkpoint is None:
        raise RaymlopsError("training finished without a checkpoint; see the Ray Train logs")
    checkpoint_dir = Path(result.checkpoint.path)
    history = json.loads((checkpoint_dir / HISTORY_FILE).read_text())
    return checkpoint_dir, history, dict(result.metrics or {})


def _input_example(dirs: list[Path], columns: list[str], rows: int = 5) -> pd.DataFrame:
    """A few raw rows for MLflow's input example, read from the first non-empty file."""
    for directory in dirs:
        for path in sorted(directory.glob("*.parquet")):
            frame = pd.read_parquet(path, columns=columns)
            if len(frame):
                return frame.head(rows)
    raise RaymlopsError(f"no rows in {dirs} to use as the model's input example")


def run_name(kind: str, run_id: str, attempt_key: str) -> str:
    """``train-{run_id}-{key}`` / ``tune-{run_id}-{key}``: the Ray run of these inputs."""
    key = attempt_key.removeprefix("sha256:")
    if not re.fullmatch(r"[0-9A-Za-z]{12,}", key):
        raise ValueError(f"attempt_key {attempt_key!r}: give the digest of the train "
                         "stage's inputs (at least 12 letters or digits)")
    return f"{kind}-{run_id}-{key[:12]}"


def train(config: PipelineConfig, *, run_id: str, attempt_key: str, run_dir: Path,
          storage: Path, experiment_id: str, train_dir: Path, valid_dir: Path,
          features_path: Path, dataset: dict[str, Any]) -> TrainResult:
    """Fit (or tune), then log the model. ``attempt_key`` is the digest of this stage's
    inputs (config sections and upstream outputs); it names the Ray runs."""
    objective = default_metric(config) if config.train.tune is not None else None
    fitted = FittedFeatures.load(features_path)
    plan = Plan(config, fitted, dict(config.train.params), storage).load_datasets(train_dir,
                                                                                 valid_dir)
    outcome: TuneOutcome | None = None
    if config.train.tune is not None and objective is not None:
        ray_name = run_name("tune", run_id, attempt_key)
        outcome = run_tuning(plan, name=ray_name, settings=config.train.tune,
                             metric=objective[0], mode=objective[1])
        checkpoint_dir, params = outcome.checkpoint_dir, outcome.best_params
        ray_name = outcome.name or ray_name
        history = json.loads((checkpoint_dir / HISTORY_FILE).read_text())
        final = next(t.last for t in outcome.trials if t.trial_id == outcome.best_trial)
    else:
        ray_name = run_name("train", run_id, attempt_key)
        checkpoint_dir, history, final = fit_on_ray(plan, ray_name)
        params = dict(config.train.params)
    model_dir = run_dir / "model"
    shutil.rmtree(model_dir, ignore_errors=True)
    model_dir.mkdir(parents=True)
    for name in MODEL_FILES[config.train.framework]:
        shutil.copyfile(checkpoint_dir / name, model_dir / name)
    final = {k: float(v) for k, v in final.items()
             if isinstance(v, int | float) and not isinstance(v, bool)}
    log.info("trained %s (%s); final %s", config.train.framework,
             "best of tuning" if outcome else "one fit",
             {k: round(v, 4) for k, v in final.items() if k.startswith(("valid_", "train_"))})

    loop = plan.loop_config(params)
    logged = {**loop["params"], **{k: loop[k] for k in ("rounds", "early_stopping", "spec")
                                   if k in loop}}
    best_iteration = _best_iteration(config, loop, checkpoint_dir)
    mlflow_run_id = tracking.start_training_run(experiment_id, run_id, config, dataset["digest"])
    try:
        tracking.log_training(mlflow_run_id, params=logged, history=history, final=final,
                              config=config,
                              seeds={"train": config.train.seed, "split": config.data.split.seed},
                              dataset=dataset, reports=(run_dir / "data" / "validation.json",
                                                        run_dir / "data" / "validation.html"))
        if outcome is not None:
            tracking.log_trials(mlflow_run_id, experiment_id, run_id, outcome)
        example = _input_example([valid_dir, train_dir], fitted.input_columns)
        meta: dict[str, Any] = {
            "task": config.data.task, "framework": config.train.framework,
            "feature_names": fitted.feature_names, "target": config.data.target,
            "run_id": run_id}
        if best_iteration is not None:
            meta["best_iteration"] = best_iteration  # RaymlopsModel.iteration_range
        if dataset.get("positive_label") is not None:
            meta["positive_label"] = dataset["positive_label"]
            meta["positive_reason"] = dataset.get("positive_reason", "")
        if config.data.task == "classification":
            meta["threshold"] = validation_threshold(config, features_path, model_dir, meta,
                                                     valid_dir)
            log.info("decision threshold %.4f: %s", meta["threshold"]["value"],
                     meta["threshold"]["reason"])
        model_uri = tracking.log_model(mlflow_run_id, features_path=features_path,
                                       model_dir=model_dir, meta=meta, example=example)
    except Exception:
        tracking.finish_run(mlflow_run_id, "FAILED")
        raise
    tracking.finish_run(mlflow_run_id)
    tuning = None if outcome is None else {
        "best_trial": outcome.best_trial, "metric": outcome.metric, "mode": outcome.mode,
        "reason": f"lowest last {outcome.metric}" if outcome.mode == "min" else
                  f"highest last {outcome.metric}",
        "trials": {t.trial_id: {"status": t.status, "value": t.last.get(outcome.metric)}
                   for t in outcome.trials}}
    return TrainResult(mlflow_run_id=mlflow_run_id, model_uri=model_uri, model_dir=str(model_dir),
                       params=logged, final_metrics=final, tuning=tuning,
                       best_iteration=best_iteration, ray_run_name=ray_name)


#: Validation rows the threshold is chosen on, at most (a sample of a bigger split).
THRESHOLD_ROWS = 500_000


def validation_threshold(config: PipelineConfig, features_path: Path, model_dir: Path,
                         meta: dict[str, Any], valid_dir: Path) -> dict[str, Any]:
    """The decision threshold ``evaluation.threshold`` asks for, chosen on the validation
    split (never the holdout the gates judge), with the model as it will serve."""
    import tempfile

    from raymlops._internal.threshold import choose_threshold
    from raymlops.names import LABEL
    from raymlops.training.pyfunc import RaymlopsModel

    settings = config.evaluation.threshold
    files = sorted(valid_dir.glob("*.parquet"))
    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True) if files else \
        pd.DataFrame()
    if settings.objective == "fixed" or frame.empty:
        return choose_threshold(np.zeros(0), np.zeros(0), objective="fixed",
                                value=settings.value if settings.value is not None else 0.5)
    if len(frame) > THRESHOLD_ROWS:
        frame = frame.sample(THRESHOLD_ROWS, random_state=0)
    with tempfile.TemporaryDirectory() as tmp:
        meta_path = Path(tmp) / "meta.json"
        meta_path.write_text(json.dumps(meta))
        model = RaymlopsModel().load_from(features_path, model_dir, meta_path)
        score = model.predict_frame(frame, raw=False)
    return choose_threshold(frame[LABEL].to_numpy(dtype=int), score,
                            objective=settings.objective, cost_fp=settings.cost_fp,
                            cost_fn=settings.cost_fn)


def _best_iteration(config: PipelineConfig, loop: dict[str, Any],
                    checkpoint_dir: Path) -> int | None:
    """The best iteration an XGBoost fit with early stopping recorded in its checkpoint."""
    if config.train.framework != "xgboost" or not loop.get("early_stopping"):
        return None
    best = read_state(checkpoint_dir).get("best_iteration")
    return None if best is None else int(best)
