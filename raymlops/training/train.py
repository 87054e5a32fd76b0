"""Train: fit the model on Ray Train, then track it in MLflow as a pyfunc model."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel

from raymlops.config import PipelineConfig
from raymlops.data.features import FittedFeatures
from raymlops.errors import RaymlopsError, RetryableError
from raymlops.training import tracking
from raymlops.training.trainer import Plan, default_metric
from raymlops.training.tune import TuneOutcome, run_tuning

log = logging.getLogger(__name__)


class TrainResult(BaseModel):
    mlflow_run_id: str
    model_uri: str
    model_dir: str
    params: dict[str, Any]
    final_metrics: dict[str, float]
    #: the search's decision, when train.tune ran: best trial, metric, every trial's end
    tuning: dict[str, Any] | None = None


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
        raise RetryableError(f"training failed on Ray Train ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}); the run can be "
                             "resumed with --run-id, and training continues from its latest "
                             "checkpoint") from exc
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


def train(config: PipelineConfig, *, run_id: str, run_dir: Path, storage: Path,
          experiment_id: str, train_dir: Path, valid_dir: Path, features_path: Path,
          dataset: dict[str, Any]) -> TrainResult:
    fitted = FittedFeatures.load(features_path)
    plan = Plan(config, fitted, dict(config.train.params), storage).load_datasets(train_dir,
                                                                                 valid_dir)
    outcome: TuneOutcome | None = None
    if config.train.tune is not None:
        metric, mode = default_metric(config)
        outcome = run_tuning(plan, name=f"tune-{run_id}", settings=config.train.tune,
                             metric=metric, mode=mode)
        checkpoint_dir, params = outcome.checkpoint_dir, outcome.best_params
        history = json.loads((checkpoint_dir / HISTORY_FILE).read_text())
        final = next(t.last for t in outcome.trials if t.trial_id == outcome.best_trial)
    else:
        checkpoint_dir, history, final = fit_on_ray(plan, f"train-{run_id}")
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
        meta = {"task": config.data.task, "framework": config.train.framework,
                "feature_names": fitted.feature_names, "target": config.data.target,
                "run_id": run_id}
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
                       params=logged, final_metrics=final, tuning=tuning)
