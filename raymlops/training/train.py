"""Train: fit the model on Ray Train, then track it in MLflow as a pyfunc model."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel

from raymlops._internal.io import read_parquet_dir
from raymlops.config import PipelineConfig
from raymlops.data.features import FittedFeatures
from raymlops.errors import RaymlopsError, RetryableError
from raymlops.training import tracking
from raymlops.training.xgboost_loop import (
    HISTORY_FILE,
    LABEL,
    MODEL_FILE,
    train_loop_per_worker,
    xgboost_params,
)

log = logging.getLogger(__name__)


class TrainResult(BaseModel):
    mlflow_run_id: str
    model_uri: str
    model_dir: str
    params: dict[str, Any]
    final_metrics: dict[str, float]


class ToFeatures:
    """Batch function: raw rows to the model's feature columns plus the label."""

    def __init__(self, fitted: FittedFeatures) -> None:
        self.fitted = fitted

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        return self.fitted.transform_frame(batch, keep=[LABEL] if LABEL in batch else [])


def scaling_config(config: PipelineConfig) -> Any:
    from ray.train import ScalingConfig

    s = config.train.scaling
    resources: dict[str, float] = {"CPU": s.cpus_per_worker}
    if s.use_gpu:
        resources["GPU"] = s.gpus_per_worker
    return ScalingConfig(num_workers=s.num_workers, use_gpu=s.use_gpu,
                         resources_per_worker=resources)


def fit_on_ray(config: PipelineConfig, *, train_dir: Path, valid_dir: Path, fitted: FittedFeatures,
               params: dict[str, Any], rounds: int, early: int | None, storage: Path,
               name: str) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """Run the XGBoost loop on Ray Train; returns (checkpoint dir, history, final metrics)."""
    from ray.train import RunConfig
    from ray.train.xgboost import XGBoostTrainer

    to_features = ToFeatures(fitted)
    # Materialized before the trainer starts: XGBoost holds its whole DMatrix in memory
    # anyway, and a feed that still had to read files would need CPUs that the training
    # workers hold. On a small node whose Serve replicas keep fractions of a CPU, Ray
    # Data's file-listing task (1 CPU) then never gets scheduled, and training hangs.
    datasets: dict[str, Any] = {
        name: read_parquet_dir(path).map_batches(to_features, batch_format="pandas").materialize()
        for name, path in (("train", train_dir), ("valid", valid_dir))
    }
    trainer = XGBoostTrainer(
        train_loop_per_worker,
        train_loop_config={"params": params, "rounds": rounds, "early_stopping": early},
        scaling_config=scaling_config(config),
        run_config=RunConfig(name=name, storage_path=str(storage)),
        datasets=datasets,
    )
    try:
        result = trainer.fit()
    except Exception as exc:
        raise RetryableError(f"training failed on Ray Train ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}); the run can be "
                             "resumed with --run-id") from exc
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
    s = config.train.scaling
    params, rounds, early = xgboost_params(config.data.task, config.train.params,
                                           seed=config.train.seed, use_gpu=s.use_gpu,
                                           nthread=max(1, int(s.cpus_per_worker)))
    fitted = FittedFeatures.load(features_path)
    checkpoint_dir, history, final = fit_on_ray(
        config, train_dir=train_dir, valid_dir=valid_dir, fitted=fitted, params=params,
        rounds=rounds, early=early, storage=storage, name=f"train-{run_id}")
    model_dir = run_dir / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    booster_path = model_dir / MODEL_FILE
    shutil.copyfile(checkpoint_dir / MODEL_FILE, booster_path)
    log.info("trained %s rounds; final %s", final.get("rounds"),
             {k: round(v, 4) for k, v in final.items() if isinstance(v, float)})

    mlflow_run_id = tracking.start_training_run(experiment_id, run_id, config, dataset["digest"])
    try:
        tracking.log_training(mlflow_run_id, params={**params, "num_boost_round": rounds,
                                                     "early_stopping_rounds": early},
                              history=history, final=final, config=config,
                              seeds={"train": config.train.seed, "split": config.data.split.seed},
                              dataset=dataset, reports=(run_dir / "data" / "validation.json",
                                                        run_dir / "data" / "validation.html"))
        example = _input_example([valid_dir, train_dir], fitted.input_columns)
        meta = {"task": config.data.task, "framework": config.train.framework,
                "feature_names": fitted.feature_names, "target": config.data.target,
                "run_id": run_id}
        model_uri = tracking.log_model(mlflow_run_id, features_path=features_path,
                                       booster_path=booster_path, meta=meta, example=example)
    except Exception:
        tracking.finish_run(mlflow_run_id, "FAILED")
        raise
    tracking.finish_run(mlflow_run_id)
    return TrainResult(mlflow_run_id=mlflow_run_id, model_uri=model_uri, model_dir=str(model_dir),
                       params={**params, "num_boost_round": rounds},
                       final_metrics={k: float(v) for k, v in final.items()
                                      if isinstance(v, int | float)})
