"""The model stages as the driver runs them: train, register, evaluate (and the gate)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from raymlops.config import PipelineConfig
from raymlops.errors import GateRejectedError
from raymlops.evaluation.evaluate import EvaluationResult
from raymlops.lineage.store import Event
from raymlops.registry.mlflow_registry import Registration
from raymlops.training.train import TrainResult

if TYPE_CHECKING:
    from raymlops.pipeline.stages import Context

log = logging.getLogger("raymlops.pipeline")


def _train(ctx: Context) -> TrainResult:
    from raymlops.training import tracking
    from raymlops.training.train import train

    cfg, ing, prep = ctx.config, ctx["ingest"], ctx["preprocess"]
    dataset = {"digest": ing.digest, "rows": ing.rows, "source": ing.source,
               "name": f"{cfg.project}-{ctx.source.name()}", "schema": ing.schema_,
               "profile": ing.profile,
               "positive_label": ing.positive_label if cfg.data.positive_label is None
               else cfg.data.positive_label,
               "positive_reason": ing.positive_reason or "data.positive_label"}
    return train(cfg, run_id=ctx.run_id, attempt_key=ctx.input_digest, run_dir=ctx.run_dir,
                 storage=ctx.workspace.root / "ray_results",
                 experiment_id=tracking.setup_experiment(cfg, ctx.workspace),
                 train_dir=Path(prep.train), valid_dir=Path(prep.valid),
                 features_path=Path(prep.features), dataset=dataset)


def _train_events(ctx: Context, trained: TrainResult) -> list[Event]:
    return [Event("model_trained", {
        "mlflow_run_id": trained.mlflow_run_id, "model_uri": trained.model_uri,
        "metrics": trained.final_metrics, "framework": ctx.config.train.framework,
        "tuning": trained.tuning}, dataset_digest=ctx["ingest"].digest)]


def _champion(ctx: Context) -> dict[str, str] | None:
    """The version serving today under deploy.name (its ``champion`` alias), unless it is
    the candidate itself."""
    from raymlops.registry import mlflow_registry as registry

    name, candidate = ctx.config.deploy.name, ctx["register"].version
    version = registry.alias_version(name, registry.CHAMPION)
    if version is None or version == candidate:
        return None
    return {"version": version, "model_uri": f"models:/{name}/{version}"}


def _evaluate(ctx: Context) -> EvaluationResult:
    from raymlops.evaluation import card
    from raymlops.evaluation.evaluate import evaluate
    from raymlops.pipeline.promotion import environments, gates_of
    from raymlops.registry import mlflow_registry as registry
    from raymlops.training import tracking

    trained, reg, ing = ctx["train"], ctx["register"], ctx["ingest"]
    # the gates of the environment a run deploys to: the config's plus its own
    first = environments(ctx.config)[0]
    config = ctx.config.model_copy(update={"gates": gates_of(ctx.config, first)})
    result = evaluate(config, test_dir=Path(ctx["preprocess"].test),
                      model_uri=trained.model_uri, tracking_uri=ctx.tracking_uri,
                      run_dir=ctx.run_dir, champion=_champion(ctx))
    tracking.log_test_metrics(trained.mlflow_run_id, result.metrics, result.gate_passed)
    path = card.write_for(result, model=reg.model_name, version=reg.version,
                          run_dir=ctx.run_dir, dataset_digest=ing.digest, profile=ing.profile,
                          config=ctx.config, mlflow_run_id=trained.mlflow_run_id,
                          tracking_uri=ctx.tracking_uri, model_uri=trained.model_uri,
                          test_dir=Path(ctx["preprocess"].test))
    tracking.log_reports(trained.mlflow_run_id, [path, Path(result.report)], "reports")
    registry.record_verdict(reg.model_name, reg.version, passed=result.gate_passed,
                            reasons=result.gate_reasons, threshold=result.threshold)
    if result.gate_passed:
        from raymlops.pipeline.promotion import set_alias

        set_alias(ctx.services, reg.model_name, registry.CHALLENGER, reg.version,
                  actor=ctx.automatic, reason="its gates pass")
    return result.model_copy(update={"card": str(path)})


def _evaluate_events(ctx: Context, ev: EvaluationResult) -> list[Event]:
    from raymlops.pipeline.promotion import environments

    reg: Registration = ctx["register"]
    log.info("gate verdict for %s v%s: %s, because %s", reg.model_name, reg.version,
             "PASS" if ev.gate_passed else "REJECT", "; ".join(ev.gate_reasons))
    return [Event("gate_verdict", {"passed": ev.gate_passed, "reasons": ev.gate_reasons,
                                   "rules": ev.rules, "metrics": ev.metrics,
                                   "threshold": ev.threshold, "champion": ev.champion,
                                   "card": ev.card, "model_uri": ctx["train"].model_uri,
                                   "env": environments(ctx.config)[0].name},
                  model_name=reg.model_name, model_version=reg.version,
                  dataset_digest=ctx["ingest"].digest)]


def _gate(ctx: Context) -> None:
    ev: EvaluationResult = ctx["evaluate"]
    if not ev.gate_passed:
        reg: Registration = ctx["register"]
        failed = [r["reason"] for r in ev.rules if not r.get("passed")] or ev.gate_reasons
        raise GateRejectedError(f"{reg.model_name} version {reg.version} is rejected by its "
                                f"gates (recorded, never deployed): {'; '.join(failed)}")


def _register(ctx: Context) -> Registration:
    import json

    from raymlops.names import (
        COMMIT_TAG,
        CONFIG_HASH_TAG,
        DATASET_DIGEST_TAG,
        GATE_TAG,
        RESOURCES_TAG,
    )
    from raymlops.pipeline.promotion import AUTHOR_TAG
    from raymlops.registry import mlflow_registry as registry
    from raymlops.training.tracking import git_commit

    trained, name = ctx["train"], ctx.config.deploy.name
    # "find my version, else register" under a lock: concurrent registrations of one
    # model never duplicate a version, never lose one
    with ctx.services.gov.registry_lock(name):
        return registry.register(name, model_uri=trained.model_uri,
                                 run_id=ctx.run_id, mlflow_run_id=trained.mlflow_run_id,
                                 input_digest=ctx.input_digest,
                                 tags={DATASET_DIGEST_TAG: ctx["ingest"].digest,
                                       GATE_TAG: "pending",
                                       CONFIG_HASH_TAG: config_hash(ctx.config),
                                       COMMIT_TAG: git_commit() or "unknown",
                                       AUTHOR_TAG: ctx.actor,
                                       RESOURCES_TAG: json.dumps({
                                           "num_cpus": ctx.config.deploy.cpus_per_replica,
                                           "num_gpus": ctx.config.deploy.gpus_per_replica})})


def config_hash(config: PipelineConfig) -> str:
    import hashlib
    import json

    from raymlops.config import config_snapshot

    blob = json.dumps(config_snapshot(config), sort_keys=True, default=str).encode()
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def _register_events(ctx: Context, reg: Registration) -> list[Event]:
    from raymlops.training.tracking import git_commit

    return [Event("model_registered", {
        "model_uri": ctx["train"].model_uri, "mlflow_run_id": reg.mlflow_run_id,
        "created": reg.created, "commit": git_commit() or "unknown",
        "config_hash": config_hash(ctx.config), "author": ctx.actor},
        model_name=reg.model_name,
        model_version=reg.version, dataset_digest=ctx["ingest"].digest)]
