"""MLflow tracking: the experiment, one run per training attempt, and the logged model.

On the embedded default MLflow keeps its store in ``<workdir>/mlflow.db`` (SQLite)
and its artifacts in ``<workdir>/mlartifacts``; ``tracking.uri`` points at a team
tracking server instead. Every MLflow run carries the ``raymlops.run_id`` tag, so a
resumed pipeline finds the run it made before instead of making another.
"""

from __future__ import annotations

import json
import logging
import subprocess
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from raymlops.config import PipelineConfig
from raymlops.names import RUN_TAG
from raymlops.workspace import Workspace

log = logging.getLogger(__name__)

_PACKAGES = ("raymlops", "ray", "xgboost", "torch", "mlflow", "pandas", "pyarrow", "numpy",
             "scikit-learn", "pydantic")


def tracking_uri(config: PipelineConfig, workspace: Workspace) -> str:
    return config.tracking.uri or workspace.mlflow_uri


def setup_experiment(config: PipelineConfig, workspace: Workspace) -> str:
    """Point MLflow at the store and return the experiment id (created once)."""
    import mlflow

    from raymlops.tenancy import use_workspace

    mlflow.set_tracking_uri(tracking_uri(config, workspace))
    use_workspace(config)
    name = config.tracking.experiment or config.project
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    location = None if config.tracking.uri else workspace.artifacts_dir.as_uri()
    return str(client.create_experiment(name, artifact_location=location))


def _started(mlflow_run_id: str) -> Any:
    """``mlflow.start_run`` of an existing run, under that run's experiment: the fluent
    API refuses a run of another experiment than the process's active one (left by an
    earlier ``set_experiment``, a notebook's or a test's)."""
    import mlflow

    experiment = mlflow.MlflowClient().get_run(mlflow_run_id).info.experiment_id
    mlflow.set_experiment(experiment_id=experiment)
    return mlflow.start_run(run_id=mlflow_run_id)


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=False, cwd=Path(__file__).parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def package_versions() -> dict[str, str]:
    found = {}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def start_training_run(experiment_id: str, run_id: str, config: PipelineConfig,
                       dataset_digest: str) -> str:
    """Start the MLflow run for this pipeline run's training; a stale one is closed first."""
    import mlflow

    client = mlflow.MlflowClient()
    stale = client.search_runs([experiment_id], f"tags.`{RUN_TAG}` = '{run_id}'")
    for old in stale:
        if old.info.status == "RUNNING":
            client.set_terminated(old.info.run_id, status="KILLED")
            log.info("closed MLflow run %s left RUNNING by an interrupted attempt",
                     old.info.run_id)
    tags = {
        RUN_TAG: run_id,
        "raymlops.project": config.project,
        "raymlops.dataset_digest": dataset_digest,
        "raymlops.framework": config.train.framework,
        "mlflow.source.git.commit": git_commit() or "unknown",
    }
    run = client.create_run(experiment_id, tags=tags, run_name=f"{config.deploy.name}-{run_id}")
    return str(run.info.run_id)


def log_training(mlflow_run_id: str, *, params: dict[str, Any], history: dict[str, Any],
                 final: dict[str, Any], config: PipelineConfig, seeds: dict[str, int],
                 dataset: dict[str, Any], reports: tuple[Path, ...] = ()) -> None:
    """Params, per-round metrics, config snapshot, packages, data reports, dataset input."""
    import mlflow
    from mlflow.entities import Metric, Param

    client = mlflow.MlflowClient()
    prefix = "xgb" if config.train.framework == "xgboost" else "torch"
    flat = {f"{prefix}.{k}": json.dumps(v) if isinstance(v, list | dict) else v
            for k, v in params.items()}
    flat.update({f"seed.{k}": v for k, v in seeds.items()})
    flat.update({"train.num_workers": config.train.scaling.num_workers,
                 "train.use_gpu": config.train.scaling.use_gpu})
    now = int(time.time() * 1000)
    metrics = [
        Metric(f"{split}_{name}", float(value), now, step)
        for split, by_metric in history.items()
        for name, values in by_metric.items()
        for step, value in enumerate(values)
    ]
    seen = {m.key for m in metrics}
    metrics += [Metric(k, float(v), now, 0) for k, v in final.items()
                if isinstance(v, int | float) and k not in seen]
    client.log_batch(mlflow_run_id, metrics=metrics,
                     params=[Param(k, str(v)[:6000]) for k, v in flat.items()])
    client.log_dict(mlflow_run_id, config.model_dump(mode="json", by_alias=True),
                    "config/pipeline.json")
    client.log_dict(mlflow_run_id, package_versions(), "environment/packages.json")
    client.log_dict(mlflow_run_id, dataset, "data/dataset.json")
    for report in reports:
        if report.exists():
            client.log_artifact(mlflow_run_id, str(report), "data")
    with _started(mlflow_run_id):
        frame = mlflow.data.from_pandas(  # type: ignore[attr-defined]
            pd.DataFrame({"digest": [dataset["digest"]]}), source=dataset["source"],
            name=dataset["name"], digest=dataset["digest"].removeprefix("sha256:")[:36],
        )
        mlflow.log_input(frame, context="training")


def log_trials(parent_run_id: str, experiment_id: str, run_id: str, outcome: Any) -> list[str]:
    """One MLflow run per tuning trial, nested under the training run.

    Each child holds the trial's hyperparameters, every report it made (one step per
    report), and how it ended: finished, stopped early by the scheduler, or failed.
    A resumed pipeline run replaces the children an earlier attempt left.
    """
    import mlflow
    from mlflow.entities import Metric, Param

    client = mlflow.MlflowClient()
    old = client.search_runs([experiment_id], f"tags.`mlflow.parentRunId` = '{parent_run_id}'")
    for run in old:
        client.delete_run(run.info.run_id)
    children = []
    for trial in outcome.trials:
        tags = {"mlflow.parentRunId": parent_run_id, "raymlops.parent_run_id": run_id,
                "raymlops.trial_id": trial.trial_id, "raymlops.trial_status": trial.status,
                "raymlops.best_trial": str(trial.trial_id == outcome.best_trial).lower()}
        if trial.error:
            tags["raymlops.trial_error"] = trial.error
        child = client.create_run(experiment_id, tags=tags, run_name=f"trial-{trial.trial_id}")
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for step, row in enumerate(trial.history)
                   for k, v in row.items() if k.startswith(("valid_", "train_"))]
        params = [Param(k, str(v)[:6000]) for k, v in trial.params.items()]
        for start in range(0, max(len(metrics), 1), 1000):  # MLflow takes 1000 per batch
            client.log_batch(child.info.run_id, metrics=metrics[start:start + 1000],
                             params=params if start == 0 else [])
        status = "FAILED" if trial.status == "FAILED" else "FINISHED"
        client.set_terminated(child.info.run_id, status=status)
        children.append(str(child.info.run_id))
    client.log_dict(parent_run_id, {
        "metric": outcome.metric, "mode": outcome.mode, "best_trial": outcome.best_trial,
        "best_params": outcome.best_params,
        "trials": [{"trial_id": t.trial_id, "status": t.status, "params": t.params,
                    "last": {k: v for k, v in t.last.items() if k.startswith("valid_")}}
                   for t in outcome.trials]}, "tuning/summary.json")
    return children


def log_blocked_data(experiment_id: str, run_id: str, config: PipelineConfig,
                     reports: list[Path], reason: str) -> str:
    """An MLflow run that records a dataset blocked by validation, with its reports."""
    import mlflow

    client = mlflow.MlflowClient()
    run = client.create_run(experiment_id, run_name=f"{config.deploy.name}-{run_id}-blocked",
                            tags={RUN_TAG: run_id, "raymlops.project": config.project,
                                  "raymlops.stage": "validate",
                                  "raymlops.blocked_reason": reason[:5000]})
    for report in reports:
        if report.exists():
            client.log_artifact(run.info.run_id, str(report), "data")
    client.set_terminated(run.info.run_id, status="FAILED")
    return str(run.info.run_id)


def log_model(mlflow_run_id: str, *, features_path: Path, model_dir: Path,
              meta: dict[str, Any], example: pd.DataFrame) -> str:
    """Log the pyfunc model (signature + input example); returns its model URI.

    The signature names every input column with MLflow's ``Any`` type: the model takes
    raw rows (numbers as text, padded strings, a float-coded category) and normalizes
    them itself with its recorded ``RowSpec``. A typed signature would make MLflow's own
    schema enforcement convert them first, differently: it refused a blank number and
    turned a missing Arrow-backed string into the text ``'<NA>'``.
    """
    import mlflow
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types.schema import AnyType, ColSpec, ParamSchema, ParamSpec, Schema

    from raymlops.training.pyfunc import RaymlopsModel

    with tempfile.TemporaryDirectory() as tmp:
        meta_path = Path(tmp) / "meta.json"
        meta_path.write_text(json.dumps(meta, indent=1))
        artifacts = {"features": str(features_path), "model": str(model_dir),
                     "meta": str(meta_path)}
        local = RaymlopsModel().load_from(features_path, model_dir, meta_path)
        predictions = local.predict_frame(example, raw=False)
        # A hashed PII column's raw value cannot be shown: the example leaves it missing.
        example = example.assign(**dict.fromkeys(local.features.spec.hashed, None))
        inputs = Schema([ColSpec(AnyType(), name=c) for c in local.input_columns])
        params = ParamSchema([ParamSpec("output", "string", "score")])
        signature = ModelSignature(inputs=inputs,
                                   outputs=infer_signature(example, predictions).outputs,
                                   params=params)
        versions = package_versions()
        framework = "torch" if meta.get("framework") == "torch" else "xgboost"
        requirements = [f"{p}=={versions[p]}" for p in (framework, "pandas", "numpy", "pyarrow",
                                                        "scikit-learn")
                        if p in versions] + [f"mlflow=={versions.get('mlflow', '')}".rstrip("=")]
        with _started(mlflow_run_id):
            info = mlflow.pyfunc.log_model(
                name="model", python_model=RaymlopsModel(), artifacts=artifacts,
                signature=signature, input_example=example, pip_requirements=requirements,
            )
    return str(info.model_uri)


def finish_run(mlflow_run_id: str, status: str = "FINISHED") -> None:
    import mlflow

    mlflow.MlflowClient().set_terminated(mlflow_run_id, status=status)


def log_test_metrics(mlflow_run_id: str, metrics: dict[str, float], passed: bool) -> None:
    """The holdout metrics (``test_*``) and the gate verdict, on the training run."""
    import mlflow
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    mlflow.MlflowClient().log_batch(mlflow_run_id, metrics=[
        Metric(f"test_{k}", float(v), now, 0) for k, v in metrics.items()])
    mlflow.MlflowClient().set_tag(mlflow_run_id, "raymlops.gate",
                                  "passed" if passed else "rejected")


def mlflow_ui_command(config: PipelineConfig, workspace: Workspace) -> str:
    """How to look at this run: the team server's URL, or the local ``mlflow ui`` line."""
    if config.tracking.uri:
        return config.tracking.uri
    return (f"mlflow ui --backend-store-uri {workspace.mlflow_uri} "
            f"--default-artifact-root {workspace.artifacts_dir.as_uri()} --port 5000")


def log_reports(mlflow_run_id: str, paths: list[Path], folder: str) -> None:
    """Attach report files (the model card, the evaluation report) to a training run."""
    import mlflow

    client = mlflow.MlflowClient()
    for path in paths:
        if path.exists():
            client.log_artifact(mlflow_run_id, str(path), folder)
