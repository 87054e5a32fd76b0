"""Retrain a registered version from what it recorded: ``raymlops retrain MODEL/VERSION``.

A version's MLflow run holds the config snapshot (seeds included) and the git commit;
its pipeline run's ingest record in lineage holds the protected data snapshot and its
digest. Retraining runs the whole pipeline again from that snapshot with that config,
after checking that the data still has the recorded digest, and registers the result
as a new version. The new metrics are compared with the recorded ones: with the same
seed, data and config they match within floating-point tolerance on CPU.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from raymlops.config import PipelineConfig, load_config
from raymlops.errors import NotFoundError
from raymlops.lineage.store import LineageStore
from raymlops.names import RUN_TAG
from raymlops.pipeline import Pipeline, RecordedData, RunSummary
from raymlops.training.tracking import git_commit

log = logging.getLogger("raymlops.retrain")


class RetrainSource(BaseModel):
    model: str
    version: str
    run_id: str
    mlflow_run_id: str
    snapshot: str
    digest: str
    commit: str | None
    metrics: dict[str, float]


class RetrainResult(BaseModel):
    source: RetrainSource
    summary: RunSummary
    commit_now: str | None
    same_commit: bool
    metric_diffs: dict[str, float]
    max_abs_diff: float


def recorded_inputs(name: str, version: str, store: LineageStore) -> tuple[RetrainSource,
                                                                          PipelineConfig]:
    """What the version recorded: its config, data snapshot, digest, commit and metrics."""
    import mlflow

    client = mlflow.MlflowClient()
    model_version = client.get_model_version(name, version)
    run_id = (model_version.tags or {}).get(RUN_TAG)
    if not run_id or not model_version.run_id:
        raise NotFoundError(f"{name}/{version} was not registered by a raymlops run "
                            f"(no {RUN_TAG} tag); it cannot be retrained from its records")
    run = client.get_run(model_version.run_id)
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(model_version.run_id, "config/pipeline.json", tmp)
        config = load_config(json.loads(Path(path).read_text()))
    ingest = store.get_stage(run_id, "ingest")
    if ingest is None:
        raise NotFoundError(f"{name}/{version}: run {run_id} has no ingest record in "
                            f"{store.url}; point --workdir or --config at its lineage store")
    snapshot = Path(ingest.outputs["snapshot"])
    if not snapshot.is_dir():
        raise NotFoundError(f"{name}/{version}: its data snapshot {snapshot} is gone (digest "
                            f"{ingest.outputs['digest']}); retraining needs the exact data")
    source = RetrainSource(
        model=name, version=version, run_id=run_id, mlflow_run_id=model_version.run_id,
        snapshot=str(snapshot), digest=ingest.outputs["digest"],
        commit=run.data.tags.get("mlflow.source.git.commit"),
        metrics={k: float(v) for k, v in run.data.metrics.items()})
    return source, config


def retrain(name: str, version: str, *, workdir: str | Path | None, address: str | None,
            store: LineageStore, overrides: dict[str, Any] | None = None) -> RetrainResult:
    source, recorded = recorded_inputs(name, version, store)
    # the snapshot is the whole dataset of that run, never an increment of it
    config = load_config(recorded.model_dump(mode="json", by_alias=True),
                         {**(overrides or {}), "data.incremental": False})
    now = git_commit()
    same_commit = bool(source.commit) and source.commit == now
    if not same_commit:
        log.warning("retrain of %s/%s: recorded code commit %s, running %s; metrics may "
                    "differ for that reason", name, version, source.commit, now)
    log.info("retrain of %s/%s: run %s's snapshot %s (digest %s), seeds train=%s split=%s",
             name, version, source.run_id, source.snapshot, source.digest, config.train.seed,
             config.data.split.seed)
    pipeline = Pipeline(config, workdir=workdir, address=address, recorded=RecordedData(
        snapshot=Path(source.snapshot), digest=source.digest, origin=f"{name}/{version}"))
    summary = pipeline.run()
    diffs = {f"test_{k}": float(v) - source.metrics[f"test_{k}"]
             for k, v in summary.metrics.items() if f"test_{k}" in source.metrics}
    worst = max((abs(d) for d in diffs.values()), default=0.0)
    log.info("retrain of %s/%s gave version %s; test metric differences %s", name, version,
             summary.model_version, {k: round(v, 6) for k, v in diffs.items()})
    return RetrainResult(source=source, summary=summary, commit_now=now,
                         same_commit=same_commit, metric_diffs=diffs, max_abs_diff=worst)
