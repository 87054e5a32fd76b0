"""Build the Ray Train trainer for a config: XGBoost or torch, datasets, run settings.

``train.py`` fits one trainer; ``tune.py`` builds one per trial. Both go through
``Plan``, so a trial and a plain fit differ only in the hyperparameters.

``training_failure`` tells what a failed fit means for a scheduler: a lost worker, node
or object, or an unreachable store, is a ``RetryableError`` (exit 75; ``--run-id``
resumes from the latest checkpoint); anything else, such as a bad parameter value that
XGBoost rejects, is a ``TrainingError`` (exit 10) that no retry can fix.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from raymlops._internal.io import count_rows, read_parquet_dir
from raymlops.config import PipelineConfig
from raymlops.features import FittedFeatures
from raymlops.names import LABEL

log = logging.getLogger(__name__)

DEFAULT_FREQUENCY = {"xgboost": 25, "torch": 1}


class ToFeatures:
    """Batch function: raw rows to the XGBoost feature columns plus the label."""

    def __init__(self, fitted: FittedFeatures) -> None:
        self.fitted = fitted

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        return self.fitted.transform_frame(batch, raw=False,
                                           keep=[LABEL] if LABEL in batch else [])


def scaling_config(config: PipelineConfig) -> Any:
    from ray.train import ScalingConfig

    s = config.train.scaling
    resources: dict[str, float] = {"CPU": s.cpus_per_worker}
    if s.use_gpu:
        resources["GPU"] = s.gpus_per_worker
    resources.update(s.resources)
    # Train V2's ScalingConfig (what ray.train exports at run time) has label_selector;
    # the stubs mypy reads are the older ray.air one
    return ScalingConfig(num_workers=s.num_workers, use_gpu=s.use_gpu,  # type: ignore[call-arg]
                         resources_per_worker=resources,
                         label_selector=dict(s.label_selector) or None)


def default_metric(config: PipelineConfig) -> tuple[str, str]:
    """The validation metric that picks a tuning trial: (name, min|max), checked
    against what the trials will report (``ConfigError`` naming ``train.tune.metric``)."""
    from raymlops.training.directions import tune_objective

    return tune_objective(config)


@dataclass
class Plan:
    """What every trainer of this run shares: framework, base params, data, storage."""

    config: PipelineConfig
    fitted: FittedFeatures
    params: dict[str, Any]
    storage: Path
    datasets: dict[str, Any] = field(default_factory=dict)
    #: each split's folder, rows and bytes: part of what a Tune experiment records, so a
    #: restore never continues on other data (file names change on every rewrite)
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)

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
            files = sorted(Path(path).glob("*.parquet"))
            self.sources[name] = {"path": str(path), "rows": count_rows(Path(path)),
                                  "bytes": sum(f.stat().st_size for f in files)}
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


# -- what a failed fit means -------------------------------------------------------------


def _infrastructure_types() -> tuple[type[BaseException], ...]:
    import ray.exceptions as rx
    from ray.train.v2._internal import exceptions as tx
    from ray.train.v2.api.exceptions import PreemptionError

    found: list[type[BaseException]] = [
        rx.RayActorError,  # ActorDiedError, ActorUnavailableError
        rx.WorkerCrashedError, rx.NodeDiedError, rx.LocalRayletDiedError,
        rx.ObjectLostError,  # OwnerDiedError, ObjectFetchTimedOutError, reconstruction
        rx.RaySystemError, rx.ObjectStoreFullError, rx.OutOfDiskError, rx.OutOfMemoryError,
        rx.GetTimeoutError, rx.RpcError, rx.TaskPlacementGroupRemoved,
        rx.ActorPlacementGroupRemoved,
        tx.WorkerHealthCheckTimeoutError, tx.WorkerHealthCheckFailedError,
        tx.WorkerGroupStartupTimeoutError, tx.WorkerGroupStartupFailedError,
        tx.InsufficientClusterResourcesError, tx.CollectiveTimeoutError, PreemptionError,
        ConnectionError,
    ]
    try:
        from sqlalchemy.exc import OperationalError
    except ImportError:  # pragma: no cover - sqlalchemy is a dependency
        pass
    else:
        found.append(OperationalError)
    return tuple(found)


def _unwrapped(exc: BaseException) -> BaseException | None:
    """The exception inside one of Ray's wrappers, or None for a plain exception."""
    from ray.exceptions import RayTaskError
    from ray.train.v2._internal.exceptions import UserExceptionWithTraceback

    if isinstance(exc, UserExceptionWithTraceback):
        return exc._base_exc  # where Ray Train keeps the user's exception
    if isinstance(exc, RayTaskError):
        return exc.cause if isinstance(exc.cause, BaseException) else None
    return None


def is_infrastructure(exc: BaseException | str | None,
                      _seen: set[int] | None = None) -> bool:
    """Whether a failure is the cluster's (a retry may help), not the model's.

    A ``WorkerGroupError`` is when every worker failed for infrastructure; a
    ``ControllerError`` is judged by its ``controller_failure``; a user exception that
    Ray wrapped by its content; ``__cause__``/``__context__`` chains are followed.
    A text-only error (Tune keeps one when an exception could not be pickled) is not.
    """
    from ray.train.v2.api.exceptions import ControllerError, WorkerGroupError

    from raymlops.errors import RaymlopsError

    seen = _seen if _seen is not None else set()
    if exc is None or isinstance(exc, str) or id(exc) in seen:
        return False
    seen.add(id(exc))
    if isinstance(exc, WorkerGroupError):
        failures = list(exc.worker_failures.values())
        return bool(failures) and all(is_infrastructure(f, seen) for f in failures)
    inner = exc.controller_failure if isinstance(exc, ControllerError) else _unwrapped(exc)
    if inner is not None:
        return is_infrastructure(inner, seen)
    if isinstance(exc, RaymlopsError):
        return exc.retryable
    return isinstance(exc, _infrastructure_types()) or is_infrastructure(
        exc.__cause__, seen) or is_infrastructure(exc.__context__, seen)


def root_error(exc: BaseException) -> BaseException:
    """The failure to name to a person: the first worker's own error, unwrapped."""
    from ray.train.v2.api.exceptions import ControllerError, WorkerGroupError

    for _ in range(20):  # wrappers nest a few levels deep at most
        if isinstance(exc, WorkerGroupError) and exc.worker_failures:
            failures = list(exc.worker_failures.values())
            exc = next((f for f in failures if not is_infrastructure(f)), failures[0])
        elif isinstance(exc, ControllerError):
            exc = exc.controller_failure
        elif (inner := _unwrapped(exc)) is not None:
            exc = inner
        else:
            break
    return exc


def _headline(exc: BaseException | str) -> str:
    import re

    text = exc if isinstance(exc, str) else str(exc)
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    # XGBoost's native checks start with "[12:34:56] /path/to/file.cc:42: "
    return re.sub(r"^\[\d\d:\d\d:\d\d\] \S+:\d+: ", "", line)[:300]


def training_failure(exc: BaseException, *, what: str = "training") -> Exception:
    """The raymlops error for a failed ``trainer.fit()`` (raise it ``from exc``)."""
    from raymlops.errors import RaymlopsError, RetryableError, TrainingError

    if is_infrastructure(exc):
        return RetryableError(
            f"{what} failed on Ray Train ({type(exc).__name__}: {_headline(exc)}); the run "
            "can be resumed with --run-id, and training continues from its latest checkpoint")
    root = root_error(exc)
    if isinstance(root, RaymlopsError):
        return type(root)(root.message)
    return TrainingError(f"{what} failed: {type(root).__name__}: {_headline(root)}; a retry "
                         "will not help: check train.params (and train.tune.search_space)")


def trials_failure(errors: list[BaseException | str], *, what: str) -> Exception:
    """The raymlops error when every tuning trial failed: retryable when one of them
    failed for infrastructure (a retry may finish it), else the first trial's error."""
    from raymlops.errors import TrainingError

    infrastructure = [e for e in errors if isinstance(e, BaseException) and
                      is_infrastructure(e)]
    if infrastructure:
        return training_failure(infrastructure[0], what=f"{what} (every trial failed)")
    first = errors[0] if errors else "no error recorded"
    if isinstance(first, BaseException):
        return training_failure(first, what=f"{what} (every trial failed; the first)")
    return TrainingError(f"{what}: every trial failed: {_headline(first)}; a retry will "
                         "not help: check train.params and train.tune.search_space")
