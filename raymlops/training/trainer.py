"""Build the Ray Train trainer for a config: XGBoost or torch, datasets, run settings.

``train.py`` fits one trainer; ``tune.py`` builds one per trial. Both go through
``Plan``, so a trial and a plain fit differ only in the hyperparameters.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from raymlops._internal.io import read_parquet_dir
from raymlops.config import PipelineConfig
from raymlops.data.features import FittedFeatures
from raymlops.data.rules import LABEL

log = logging.getLogger(__name__)

DEFAULT_FREQUENCY = {"xgboost": 25, "torch": 1}


class ToFeatures:
    """Batch function: raw rows to the XGBoost feature columns plus the label."""

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


def default_metric(config: PipelineConfig) -> tuple[str, str]:
    """The validation metric that picks a tuning trial: (name, min|max)."""
    tune = config.train.tune
    if tune is not None and tune.metric:
        return tune.metric, tune.mode or ("max" if tune.metric.endswith("auc") else "min")
    name = "valid_logloss" if config.data.task == "classification" else "valid_rmse"
    return name, "min"


@dataclass
class Plan:
    """What every trainer of this run shares: framework, base params, data, storage."""

    config: PipelineConfig
    fitted: FittedFeatures
    params: dict[str, Any]
    storage: Path
    datasets: dict[str, Any] = field(default_factory=dict)

    @property
    def framework(self) -> str:
        return self.config.train.framework

    @property
    def report_every(self) -> int:
        return self.config.train.checkpoint.frequency or DEFAULT_FREQUENCY[self.framework]

    def load_datasets(self, train_dir: Path, valid_dir: Path) -> Plan:
        """The train and valid splits as model inputs, materialized before training.

        XGBoost holds its whole DMatrix in memory anyway, and a feed that still had to
        read files would need CPUs that the training workers hold; on a small node
        whose Serve replicas keep fractions of a CPU, reads could then wait forever.
        """
        from raymlops.training.torch_loop import ToTensors

        batch_fn: Any = ToFeatures(self.fitted) if self.framework == "xgboost" else \
            ToTensors(self.fitted)
        for name, path in (("train", train_dir), ("valid", valid_dir)):
            self.datasets[name] = read_parquet_dir(path).map_batches(
                batch_fn, batch_format="pandas").materialize()
        return self

    def loop_config(self, params: dict[str, Any]) -> dict[str, Any]:
        train = self.config.train
        if self.framework == "xgboost":
            from raymlops.training.xgboost_loop import xgboost_params

            merged, rounds, early = xgboost_params(
                self.config.data.task, params, seed=train.seed, use_gpu=train.scaling.use_gpu,
                nthread=max(1, int(train.scaling.cpus_per_worker)))
            return {"params": merged, "rounds": rounds, "early_stopping": early,
                    "report_every": self.report_every}
        from raymlops.training.torch_loop import model_spec, torch_params

        merged = torch_params(params)
        spec = model_spec(self.config.data.task, self.fitted, merged)
        return {"params": merged, "spec": spec.__dict__, "seed": train.seed,
                "threads": max(1, int(train.scaling.cpus_per_worker)),
                "report_every": self.report_every}

    def trainer(self, name: str, params: dict[str, Any], *, storage: Path | None = None,
                callbacks: list[Any] | None = None) -> Any:
        """A trainer for ``params``; the same ``name`` and storage resume the same run."""
        from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig

        train = self.config.train
        run_config = RunConfig(
            name=name, storage_path=str(storage or self.storage), callbacks=callbacks,
            checkpoint_config=CheckpointConfig(num_to_keep=train.checkpoint.num_to_keep),
            failure_config=FailureConfig(max_failures=train.failure.max_failures))
        # One worker reads the datasets whole: splitting starts a coordinator actor per
        # dataset (about 1.5 s each on 2 cores) to deal blocks to a single reader.
        split: Any = [] if train.scaling.num_workers == 1 else "all"
        common = {"train_loop_config": self.loop_config(params),
                  "scaling_config": scaling_config(self.config), "run_config": run_config,
                  "datasets": dict(self.datasets),
                  "dataset_config": DataConfig(datasets_to_split=split)}
        if self.framework == "xgboost":
            from ray.train.xgboost import XGBoostTrainer

            from raymlops.training import xgboost_loop

            return XGBoostTrainer(xgboost_loop.train_loop_per_worker, **common)
        from ray.train.torch import TorchTrainer

        from raymlops.training import torch_loop

        return TorchTrainer(torch_loop.train_loop_per_worker, **common)
