"""The declared stage list: what each stage reads, runs, returns and records.

Only this module knows the order. Each ``Stage`` names the config sections and the
upstream stages it reads (its input digest covers both), the function that runs it,
the typed output, and the lineage events it emits *when it runs*: a resumed run that
reuses a stage emits nothing for it. Guards (``before``) stop the run between stages,
as a rejected gate does before ``register``; ``still_valid`` lets a stage whose effect
lives outside our store (serving) be reused only while that effect is still there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from raymlops.config import PipelineConfig
from raymlops.data.ingest import IngestResult
from raymlops.data.preprocess import PreprocessResult
from raymlops.data.sources import Source
from raymlops.data.validate import ValidationResult
from raymlops.errors import DataError, DataValidationError, GateRejectedError
from raymlops.evaluation.evaluate import EvaluationResult
from raymlops.lineage.store import Event
from raymlops.monitoring.monitor import MonitorResult
from raymlops.registry.mlflow_registry import Registration
from raymlops.serving.deploy import DeployResult
from raymlops.training.train import TrainResult
from raymlops.workspace import Workspace

log = logging.getLogger("raymlops.pipeline")


@dataclass(frozen=True)
class RecordedData:
    """The already-protected snapshot a registered version was trained on (retrain)."""

    snapshot: Path
    digest: str
    origin: str  # "MODEL/VERSION", for the lineage event


@dataclass
class Context:
    """What the stages of one run share: the config, where things go, what ran so far."""

    config: PipelineConfig
    workspace: Workspace
    run_id: str
    run_dir: Path
    source: Source
    recorded: RecordedData | None
    pii_key: bytes
    key_ref: dict[str, str]
    results: dict[str, Any] = field(default_factory=dict)
    #: each stage's input digest, which the stages below it chain into theirs
    digests: dict[str, str] = field(default_factory=dict)
    #: the input digest of the stage now running (set by the driver)
    input_digest: str = ""

    @property
    def tracking_uri(self) -> str:
        from raymlops.training.tracking import tracking_uri

        return tracking_uri(self.config, self.workspace)

    def __getitem__(self, stage: str) -> Any:
        return self.results[stage]


@dataclass(frozen=True)
class Stage:
    name: str
    reads: tuple[str, ...]
    needs: tuple[str, ...]
    output: type[BaseModel]
    run: Callable[[Context], BaseModel]
    events: Callable[[Context, Any], list[Event]]
    #: something outside the config and upstream outputs that the digest covers
    fingerprint: Callable[[Context], Any] | None = None
    before: Callable[[Context], None] | None = None
    still_valid: Callable[[Context, Any], bool] | None = None
    on_error: Callable[[Context, Exception], list[Event]] | None = None
    #: runs on every attempt (its work is not a reusable result)
    always: bool = False


# -- ingest, validate, preprocess ------------------------------------------------------


def _ingest(ctx: Context) -> IngestResult:
    from raymlops.data.ingest import ingest

    result = ingest(ctx.config.data, source=ctx.source, run_dir=ctx.run_dir,
                    pii_key=ctx.pii_key, key_ref=ctx.key_ref,
                    protected=ctx.recorded is not None)
    if ctx.recorded is not None and result.digest != ctx.recorded.digest:
        raise DataError(f"retrain of {ctx.recorded.origin}: the snapshot at "
                        f"{ctx.recorded.snapshot} now has digest {result.digest}, not the "
                        f"recorded {ctx.recorded.digest}; the data changed since training")
    return result


def _ingest_events(ctx: Context, ing: IngestResult) -> list[Event]:
    events = []
    if ctx.recorded is not None:
        log.info("retrain of %s: data digest %s matches the recorded one",
                 ctx.recorded.origin, ing.digest)
        events.append(Event("retrain_data_checked", {
            "retrain_of": ctx.recorded.origin, "snapshot": str(ctx.recorded.snapshot),
            "recorded_digest": ctx.recorded.digest, "digest": ing.digest, "same": True},
            dataset_digest=ing.digest))
    events.append(Event("dataset_ingested", {
        "source": ing.source, "rows": ing.rows, "schema": ing.schema_,
        "pii": dict(ctx.config.data.pii), "profile": ing.profile, "excluded": ing.excluded,
        "read_at": ing.read_at}, dataset_digest=ing.digest))
    return events


def _validate(ctx: Context) -> ValidationResult:
    from raymlops.data.validate import validate
    from raymlops.features.normalize import RowSpec

    ing: IngestResult = ctx["ingest"]
    return validate(ctx.config.data, snapshot=Path(ing.snapshot), schema=ing.schema_,
                    spec=RowSpec.from_dict(ing.spec), excluded=ing.excluded,
                    run_dir=ctx.run_dir)


def _validate_events(ctx: Context, val: ValidationResult) -> list[Event]:
    return [Event("data_validated", {
        "rows_in": val.rows_in, "rows_accepted": val.rows_accepted,
        "rows_quarantined": val.rows_quarantined, "reasons": val.reasons,
        "class_balance": val.class_balance, "quarantine": val.quarantine,
        "report": val.report_json}, dataset_digest=ctx["ingest"].digest)]


def _validate_failed(ctx: Context, exc: Exception) -> list[Event]:
    if not isinstance(exc, DataValidationError):
        return []
    from raymlops.training import tracking

    reports = [ctx.run_dir / "data" / "validation.json", ctx.run_dir / "data" / "validation.html"]
    blocked = tracking.log_blocked_data(tracking.setup_experiment(ctx.config, ctx.workspace),
                                        ctx.run_id, ctx.config, reports, str(exc))
    log.warning("data blocked before training: %s (MLflow run %s)", exc, blocked)
    return [Event("data_blocked", {"reason": str(exc), "mlflow_run_id": blocked,
                                   "report": str(reports[0])},
                  dataset_digest=ctx["ingest"].digest)]


def _preprocess(ctx: Context) -> PreprocessResult:
    from raymlops.data.preprocess import preprocess
    from raymlops.features.normalize import RowSpec

    data, ing = ctx.config.data, ctx["ingest"]
    return preprocess(
        accepted=Path(ctx["validate"].accepted), split=data.split,
        # a dropped PII id cannot key the split: rows are then hashed whole
        id_column=data.id_column if data.id_column in ing.schema_ else None,
        spec=RowSpec.from_dict(ing.spec),
        clip={c: [r.min, r.max] for c, r in data.clip.items()}, run_dir=ctx.run_dir)


def _preprocess_events(ctx: Context, prep: PreprocessResult) -> list[Event]:
    return [Event("features_fitted", {"rows": prep.rows, "features": len(prep.feature_names),
                                      "path": prep.features},
                  dataset_digest=ctx["ingest"].digest)]


# -- train, evaluate, register --------------------------------------------------------


def _train(ctx: Context) -> TrainResult:
    from raymlops.training import tracking
    from raymlops.training.train import train

    cfg, ing, prep = ctx.config, ctx["ingest"], ctx["preprocess"]
    dataset = {"digest": ing.digest, "rows": ing.rows, "source": ing.source,
               "name": f"{cfg.project}-{ctx.source.name()}", "schema": ing.schema_,
               "profile": ing.profile}
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


def _evaluate(ctx: Context) -> EvaluationResult:
    from raymlops.evaluation.evaluate import evaluate
    from raymlops.training import tracking

    trained = ctx["train"]
    result = evaluate(ctx.config, test_dir=Path(ctx["preprocess"].test),
                      model_uri=trained.model_uri, tracking_uri=ctx.tracking_uri,
                      run_dir=ctx.run_dir)
    tracking.log_test_metrics(trained.mlflow_run_id, result.metrics, result.gate_passed)
    return result


def _evaluate_events(ctx: Context, ev: EvaluationResult) -> list[Event]:
    log.info("gate verdict: %s, because %s", "PASS" if ev.gate_passed else "REJECT",
             "; ".join(ev.gate_reasons))
    return [Event("gate_verdict", {"passed": ev.gate_passed, "reasons": ev.gate_reasons,
                                   "metrics": ev.metrics,
                                   "model_uri": ctx["train"].model_uri},
                  dataset_digest=ctx["ingest"].digest)]


def _gate(ctx: Context) -> None:
    ev: EvaluationResult = ctx["evaluate"]
    if not ev.gate_passed:
        raise GateRejectedError(f"model rejected by its gates: {'; '.join(ev.gate_reasons)}")


def _register(ctx: Context) -> Registration:
    from raymlops.names import DATASET_DIGEST_TAG, GATE_TAG
    from raymlops.registry import mlflow_registry as registry

    trained = ctx["train"]
    reg = registry.register(ctx.config.deploy.name, model_uri=trained.model_uri,
                            run_id=ctx.run_id, mlflow_run_id=trained.mlflow_run_id,
                            input_digest=ctx.input_digest,
                            tags={DATASET_DIGEST_TAG: ctx["ingest"].digest, GATE_TAG: "passed"})
    registry.set_alias(reg.model_name, registry.CANDIDATE, reg.version)
    return reg


def _register_events(ctx: Context, reg: Registration) -> list[Event]:
    return [Event("model_registered", {
        "model_uri": ctx["train"].model_uri, "mlflow_run_id": reg.mlflow_run_id,
        "created": reg.created, "alias": "candidate"}, model_name=reg.model_name,
        model_version=reg.version, dataset_digest=ctx["ingest"].digest)]


# -- deploy, monitor ------------------------------------------------------------------


def _deploy(ctx: Context) -> DeployResult:
    from raymlops.features.normalize import RowSpec
    from raymlops.registry import mlflow_registry as registry
    from raymlops.serving.deploy import deploy

    reg: Registration = ctx["register"]
    spec = RowSpec.from_dict(ctx["ingest"].spec)
    result = deploy(ctx.config.deploy, versions={reg.version: reg.model_uri},
                    weights={reg.version: 100.0}, input_columns=spec.input_columns,
                    numeric=spec.numeric, tracking_uri=ctx.tracking_uri,
                    capture_root=ctx.workspace.capture_dir)
    registry.set_alias(reg.model_name, registry.CHAMPION, reg.version)
    return result


def _deploy_events(ctx: Context, dep: DeployResult) -> list[Event]:
    reg: Registration = ctx["register"]
    log.info("rollout decision for %s v%s: %s", reg.model_name, reg.version, dep.reason)
    return [Event("model_deployed", {
        "endpoint": dep.endpoint, "weights": dep.weights, "previous_weights": dep.previous_weights,
        "reason": dep.reason, "since": dep.since, "alias": "champion",
        "deploy_version": dep.deploy_version}, model_name=reg.model_name,
        model_version=reg.version, dataset_digest=ctx["ingest"].digest)]


def _still_serving(ctx: Context, dep: DeployResult) -> bool:
    from raymlops.serving.deploy import still_serving

    return still_serving(dep)


def _monitor(ctx: Context) -> MonitorResult:
    from raymlops.features.normalize import RowSpec
    from raymlops.monitoring.monitor import monitor
    from raymlops.serving.deploy import flush_capture

    cfg, reg = ctx.config, ctx["register"]
    spec = RowSpec.from_dict(ctx["ingest"].spec)
    return monitor(cfg, workspace=ctx.workspace, run_dir=ctx.run_dir,
                   endpoint=ctx["deploy"].endpoint, versions=[reg.version],
                   reference_dir=Path(ctx["preprocess"].train), numeric=spec.numeric,
                   categorical=spec.categorical,
                   flush=lambda: flush_capture(cfg.deploy.name, [reg.version]))


def _monitor_events(ctx: Context, mon: MonitorResult) -> list[Event]:
    reg: Registration = ctx["register"]
    if mon.drifted_columns:
        log.warning("drift detected in %s: %s (report %s)", reg.model_name,
                    ", ".join(mon.drifted_columns), mon.drift_report)
    return [Event("drift_computed", {
        "report": mon.drift_report, "verdict": mon.drift_verdict,
        "drifted_columns": mon.drifted_columns, "replay": mon.replay,
        "captured_rows": mon.captured_rows}, model_name=reg.model_name,
        model_version=reg.version, dataset_digest=ctx["ingest"].digest)]


STAGES: tuple[Stage, ...] = (
    Stage("ingest", ("data",), (), IngestResult, _ingest, _ingest_events,
          fingerprint=lambda ctx: ctx.source.fingerprint()),
    Stage("validate", ("data",), ("ingest",), ValidationResult, _validate, _validate_events,
          on_error=_validate_failed),
    Stage("preprocess", ("data",), ("validate",), PreprocessResult, _preprocess,
          _preprocess_events),
    Stage("train", ("project", "data", "train", "tracking"), ("preprocess",), TrainResult,
          _train, _train_events),
    Stage("evaluate", ("data", "train", "gates"), ("train",), EvaluationResult, _evaluate,
          _evaluate_events),
    # What is registered is the trained model under deploy.name: a changed gate, or
    # deploy.replicas, re-decides or redeploys, and never registers the model twice.
    Stage("register", (), ("train",), Registration, _register, _register_events,
          fingerprint=lambda ctx: {"name": ctx.config.deploy.name}, before=_gate),
    Stage("deploy", ("deploy",), ("register",), DeployResult, _deploy, _deploy_events,
          still_valid=_still_serving),
    # Replays traffic and measures drift on what serving captured: every attempt anew.
    Stage("monitor", ("deploy", "monitor"), ("deploy",), MonitorResult, _monitor,
          _monitor_events, always=True),
)
