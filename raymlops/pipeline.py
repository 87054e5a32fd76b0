"""The driver: runs the stages in order, records each one, resumes where a run stopped.

Only this module knows the order. Each stage is a function with typed inputs and a
typed (pydantic) output. A finished stage is recorded in the lineage store with the
digest of its inputs; a rerun with the same run id skips a stage whose record exists,
whose input digest matches and whose output files are still there. Stages whose
effect lives outside our store and does not survive the cluster (serving, replayed
traffic) run again, idempotently.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from raymlops._internal.ray_runtime import init_ray, ray_running
from raymlops.config import PipelineConfig, config_snapshot
from raymlops.errors import DataValidationError, GateRejectedError
from raymlops.lineage.store import LineageStore
from raymlops.workspace import Workspace, new_run_id

log = logging.getLogger("raymlops.pipeline")

T = TypeVar("T", bound=BaseModel)

#: The config sections each stage reads. A stage's input digest covers these and its
#: upstream outputs, so changing ``monitor`` does not retrain, and changing ``data``
#: redoes everything.
STAGE_CONFIG: dict[str, tuple[str, ...]] = {
    "ingest": ("data",),
    "validate": ("data",),
    "preprocess": ("data",),
    "train": ("project", "data", "train", "tracking"),
    "evaluate": ("data", "train", "gates"),
    "register": ("data", "train", "gates", "deploy"),
    "deploy": ("deploy",),
    "monitor": ("deploy", "monitor"),
}


class RunSummary(BaseModel):
    run_id: str
    status: str
    model_name: str | None = None
    model_version: str | None = None
    metrics: dict[str, float] = {}
    gate: dict[str, Any] = {}
    endpoint: str | None = None
    reports: dict[str, str] = {}
    mlflow_ui: str = ""
    drift: dict[str, Any] = {}
    replay: dict[str, Any] = {}
    stages: dict[str, dict[str, Any]] = {}
    summary_path: str = ""


@dataclass
class _StageLog:
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)


def _digest(value: Any) -> str:
    blob = json.dumps(value, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def _paths_exist(outputs: dict[str, Any]) -> bool:
    """Every absolute local path named in a stage's outputs still exists."""
    for value in outputs.values():
        if isinstance(value, str) and value.startswith("/") and not Path(value).exists():
            return False
    return True


@dataclass(frozen=True)
class RecordedData:
    """The already-protected snapshot a registered version was trained on (retrain)."""

    snapshot: Path
    digest: str
    origin: str  # "MODEL/VERSION", for the lineage event


class Pipeline:
    """One run of the whole loop for one config: ``Pipeline(config).run()``.

    With ``recorded``, the run reads that snapshot instead of ``data.source`` (its PII
    protection was applied when it was first ingested) and fails unless the data still
    has the recorded digest: ``raymlops retrain``.
    """

    def __init__(self, config: PipelineConfig, *, workdir: str | Path | None = None,
                 run_id: str | None = None, address: str | None = None,
                 shutdown_ray: bool = True, recorded: RecordedData | None = None) -> None:
        self.config = config
        self.recorded = recorded
        self.shutdown_ray = shutdown_ray
        self.workspace = Workspace.at(workdir)
        self.run_id = run_id or new_run_id()
        self.address = address
        self.run_dir = self.workspace.run_dir(self.run_id)
        self._store: LineageStore | None = None
        self._log = _StageLog()

    @property
    def store(self) -> LineageStore:
        if self._store is None:
            self._store = LineageStore(self.config.lineage.url or self.workspace.lineage_url)
        return self._store

    # -- the stage mechanism -------------------------------------------------------------
    def _stage(self, name: str, output: type[T], inputs: Any, fn: Callable[[], T], *,
               always: bool = False) -> T:
        snapshot = config_snapshot(self.config)
        sections = {key: snapshot[key] for key in STAGE_CONFIG[name]}
        digest = _digest({"stage": name, "config": sections, "inputs": inputs})
        record = self.store.get_stage(self.run_id, name)
        if (record is not None and not always and record.input_digest == digest
                and _paths_exist(record.outputs)):
            log.info("stage %-9s skipped: finished in an earlier attempt of run %s (%.1fs)",
                     name, self.run_id, record.duration_s)
            self._log.entries[name] = {"status": "reused", "seconds": record.duration_s}
            return output.model_validate(record.outputs)
        started = datetime.now(UTC)
        clock = time.perf_counter()
        log.info("stage %-9s started", name)
        try:
            result = fn()
        except Exception as exc:
            seconds = time.perf_counter() - clock
            self._log.entries[name] = {"status": "failed", "seconds": round(seconds, 2)}
            self.store.add_event(self.run_id, name, "stage_failed",
                                 {"error": f"{type(exc).__name__}: {exc}"[:2000],
                                  "seconds": seconds})
            log.error("stage %-9s failed after %.1fs: %s", name, seconds, exc)
            raise
        seconds = time.perf_counter() - clock
        self.store.record_stage(self.run_id, name, input_digest=digest,
                                outputs=result.model_dump(mode="json"), started_at=started,
                                duration_s=seconds)
        self._log.entries[name] = {"status": "ran", "seconds": round(seconds, 2)}
        log.info("stage %-9s finished in %.1fs", name, seconds)
        return result

    def _event(self, stage: str, kind: str, payload: dict[str, Any], **keys: Any) -> None:
        self.store.add_event(self.run_id, stage, kind, payload, **keys)

    # -- the run ------------------------------------------------------------------------
    def run(self) -> RunSummary:
        from raymlops.data.sources import Source, resolve_source

        cfg = self.config
        source = (Source(files=tuple(str(p) for p in sorted(self.recorded.snapshot.glob(
            "*.parquet")))) if self.recorded else resolve_source(cfg.data, self.workspace.expand))
        self._preflight()
        self.workspace.ensure()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        resumed = not self.store.start_run(self.run_id, cfg.project, config_snapshot(cfg))
        log.info("run %s %s (workdir %s)", self.run_id, "resumed" if resumed else "started",
                 self.workspace.root)
        if cfg.data.incremental:
            source = self._new_files_only(source)
            if source is None:
                log.info("run %s: no new files under %s since the watermark; nothing to do",
                         self.run_id, cfg.data.source)
                self.store.finish_run(self.run_id, "no_new_data")
                summary = RunSummary(run_id=self.run_id, status="no_new_data")
                self._write_summary(summary)
                return summary
        started_ray = init_ray(self.address)
        try:
            summary = self._run_stages(source)
        except Exception as exc:
            rejected = isinstance(exc, GateRejectedError)
            self.store.finish_run(self.run_id, "rejected" if rejected else "failed",
                                  f"{type(exc).__name__}: {exc}")
            if rejected:
                self._write_summary(RunSummary(run_id=self.run_id, status="rejected"))
            raise
        finally:
            if started_ray and self.shutdown_ray:
                import ray

                ray.shutdown()
        if cfg.data.incremental:
            self.store.advance_watermark(self._watermark_key(), source.fingerprint(), self.run_id)
        self.store.finish_run(self.run_id, "succeeded")
        return summary

    def _check_recorded(self, digest: str) -> None:
        from raymlops.errors import DataError

        assert self.recorded is not None
        same = digest == self.recorded.digest
        self._event("ingest", "retrain_data_checked", {
            "retrain_of": self.recorded.origin, "snapshot": str(self.recorded.snapshot),
            "recorded_digest": self.recorded.digest, "digest": digest, "same": same},
                    dataset_digest=digest)
        if not same:
            raise DataError(f"retrain of {self.recorded.origin}: the snapshot at "
                            f"{self.recorded.snapshot} now has digest {digest}, not the "
                            f"recorded {self.recorded.digest}; the data changed since training")
        log.info("retrain of %s: data digest %s matches the recorded one",
                 self.recorded.origin, digest)

    def _watermark_key(self) -> str:
        return f"{self.config.project}:{self.config.data.source}"

    def _new_files_only(self, source: Any) -> Any:
        """The files no successful run ingested yet; a resumed run keeps its own choice.

        The watermark advances only when a run succeeds, so the files of a failed run are
        picked up again by the next one.
        """
        from raymlops.data.sources import Source

        earlier = self.store.get_stage(self.run_id, "ingest")
        if earlier is not None:
            return Source(files=tuple(earlier.outputs["files"]))
        seen = self.store.ingested_files(self._watermark_key())
        new = [path for path, size, mtime in source.fingerprint()
               if (path, size, mtime) not in seen]
        log.info("watermark: %d of %d files under %s are new", len(new), len(source.files),
                 self.config.data.source)
        return Source(files=tuple(new)) if new else None

    def _preflight(self) -> None:
        """Fail in seconds, not after training, when a fresh local cluster cannot serve."""
        from raymlops.serving.deploy import check_port

        attaching = self.address or os.environ.get("RAY_ADDRESS") or ray_running()
        if not attaching:
            check_port(self.config.deploy)

    def _run_stages(self, source: Any) -> RunSummary:
        from raymlops.data.features import PreprocessResult, preprocess
        from raymlops.data.ingest import IngestResult, ingest
        from raymlops.data.privacy import load_pii_key
        from raymlops.data.validate import ValidationResult, validate
        from raymlops.evaluation.evaluate import EvaluationResult, evaluate
        from raymlops.registry import mlflow_registry as registry
        from raymlops.training import tracking
        from raymlops.training.train import TrainResult, train

        cfg, ws, run_dir = self.config, self.workspace, self.run_dir
        data = cfg.data

        ing = self._stage("ingest", IngestResult, source.fingerprint(), lambda: ingest(
            data, source=source, run_dir=run_dir,
            pii_key=load_pii_key(ws.root, data.pii_key_env),
            protected=self.recorded is not None))
        if self.recorded is not None:
            self._check_recorded(ing.digest)
        self._event("ingest", "dataset_ingested", {"source": ing.source, "rows": ing.rows,
                    "schema": ing.schema_, "pii": dict(data.pii), "profile": ing.profile},
                    dataset_digest=ing.digest)

        try:
            val = self._stage("validate", ValidationResult, ing.model_dump(), lambda: validate(
                data, snapshot=Path(ing.snapshot), schema=ing.schema_, numeric=ing.numeric,
                categorical=ing.categorical, run_dir=run_dir))
        except DataValidationError as exc:
            reports = [run_dir / "data" / "validation.json", run_dir / "data" / "validation.html"]
            blocked = tracking.log_blocked_data(tracking.setup_experiment(cfg, ws), self.run_id,
                                                cfg, reports, str(exc))
            log.warning("data blocked before training: %s (MLflow run %s)", exc, blocked)
            self._event("validate", "data_blocked", {"reason": str(exc), "mlflow_run_id": blocked,
                        "report": str(reports[0])}, dataset_digest=ing.digest)
            raise
        self._event("validate", "data_validated", {
            "rows_in": val.rows_in, "rows_accepted": val.rows_accepted,
            "rows_quarantined": val.rows_quarantined, "reasons": val.reasons,
            "class_balance": val.class_balance, "quarantine": val.quarantine,
            "report": val.report_json}, dataset_digest=ing.digest)

        prep = self._stage("preprocess", PreprocessResult, val.model_dump(), lambda: preprocess(
            accepted=Path(val.accepted), split=data.split,
            # a dropped PII id cannot key the split: rows are then hashed whole
            id_column=data.id_column if data.id_column in ing.schema_ else None,
            numeric=ing.numeric, categorical=ing.categorical,
            generalized=[c for c, action in data.pii.items() if action == "generalize"],
            clip={c: [r.min, r.max] for c, r in data.clip.items()}, run_dir=run_dir))
        self._event("preprocess", "features_fitted", {"rows": prep.rows,
                    "features": len(prep.feature_names), "path": prep.features},
                    dataset_digest=ing.digest)

        uri = tracking.tracking_uri(cfg, ws)
        experiment_id = tracking.setup_experiment(cfg, ws)
        dataset = {"digest": ing.digest, "rows": ing.rows, "source": ing.source,
                   "name": f"{cfg.project}-{source.name()}", "schema": ing.schema_,
                   "profile": ing.profile}
        trained = self._stage("train", TrainResult, prep.model_dump(), lambda: train(
            cfg, run_id=self.run_id, run_dir=run_dir, storage=ws.root / "ray_results",
            experiment_id=experiment_id, train_dir=Path(prep.train), valid_dir=Path(prep.valid),
            features_path=Path(prep.features), dataset=dataset))
        self._event("train", "model_trained", {"mlflow_run_id": trained.mlflow_run_id,
                    "model_uri": trained.model_uri, "metrics": trained.final_metrics,
                    "framework": cfg.train.framework, "tuning": trained.tuning},
                    dataset_digest=ing.digest)

        ev = self._stage("evaluate", EvaluationResult, trained.model_dump(), lambda: evaluate(
            cfg, test_dir=Path(prep.test), model_uri=trained.model_uri, tracking_uri=uri,
            run_dir=run_dir))
        log.info("gate verdict: %s, because %s", "PASS" if ev.gate_passed else "REJECT",
                 "; ".join(ev.gate_reasons))
        self._event("evaluate", "gate_verdict", {"passed": ev.gate_passed,
                    "reasons": ev.gate_reasons, "metrics": ev.metrics},
                    dataset_digest=ing.digest)
        tracking.log_test_metrics(trained.mlflow_run_id, ev.metrics, ev.gate_passed)
        if not ev.gate_passed:
            raise GateRejectedError(f"model rejected by its gates: {'; '.join(ev.gate_reasons)}")

        reg = self._stage("register", registry.Registration, {"model_uri": trained.model_uri},
                          lambda: registry.register(cfg.deploy.name, model_uri=trained.model_uri,
                                                    run_id=self.run_id, tags={
                                                        "raymlops.dataset_digest": ing.digest,
                                                        "raymlops.gate": "passed"}))
        registry.set_alias(reg.model_name, registry.CANDIDATE, reg.version)
        self._event("register", "model_registered", {"model_uri": trained.model_uri,
                    "mlflow_run_id": trained.mlflow_run_id, "created": reg.created,
                    "alias": registry.CANDIDATE}, model_name=reg.model_name,
                    model_version=reg.version, dataset_digest=ing.digest)

        return self._serve_and_monitor(ing, prep, reg, ev, uri)

    def _serve_and_monitor(self, ing: Any, prep: Any, reg: Any, ev: Any,
                           uri: str) -> RunSummary:
        from raymlops.monitoring.monitor import MonitorResult, monitor
        from raymlops.registry import mlflow_registry as registry
        from raymlops.serving.deploy import DeployResult, deploy, live_weights, rollout_reason
        from raymlops.training import tracking

        cfg, ws = self.config, self.workspace
        weights = {reg.version: 100.0}
        previous = live_weights(cfg.deploy.name)
        reason = rollout_reason(previous, reg.version)
        dep = self._stage("deploy", DeployResult, reg.model_dump(), lambda: deploy(
            cfg.deploy, versions={reg.version: reg.model_uri}, weights=weights,
            input_columns=[*ing.numeric, *ing.categorical], tracking_uri=uri,
            capture_root=ws.capture_dir), always=True)
        log.info("rollout decision for %s v%s: %s", reg.model_name, reg.version, reason)
        registry.set_alias(reg.model_name, registry.CHAMPION, reg.version)
        self._event("deploy", "model_deployed", {
            "endpoint": dep.endpoint, "weights": dep.weights, "previous_weights": previous,
            "reason": reason, "since": dep.since, "alias": registry.CHAMPION},
                    model_name=reg.model_name, model_version=reg.version,
                    dataset_digest=ing.digest)

        mon = self._stage("monitor", MonitorResult, dep.model_dump(), lambda: monitor(
            cfg, workspace=ws, run_dir=self.run_dir, endpoint=dep.endpoint,
            versions=[reg.version], reference_dir=Path(prep.train), numeric=ing.numeric,
            categorical=ing.categorical), always=True)
        self._event("monitor", "drift_computed", {"report": mon.drift_report,
                    "verdict": mon.drift_verdict, "drifted_columns": mon.drifted_columns,
                    "replay": mon.replay}, model_name=reg.model_name,
                    model_version=reg.version, dataset_digest=ing.digest)
        if mon.drifted_columns:
            log.warning("drift detected in %s: %s (report %s)", reg.model_name,
                        ", ".join(mon.drifted_columns), mon.drift_report)

        summary = RunSummary(
            run_id=self.run_id, status="succeeded", model_name=reg.model_name,
            model_version=reg.version, metrics=ev.metrics,
            gate={"passed": ev.gate_passed, "reasons": ev.gate_reasons},
            endpoint=dep.endpoint,
            reports={"validation": str(Path(self.run_dir) / "data" / "validation.html"),
                     "evaluation": ev.report, "drift": mon.drift_report or "",
                     "drift_html": mon.drift_html or ""},
            mlflow_ui=tracking.mlflow_ui_command(cfg, ws),
            drift={"verdict": mon.drift_verdict, "drifted_columns": mon.drifted_columns},
            replay=mon.replay, stages=self._log.entries,
        )
        self._write_summary(summary)
        return summary

    def _write_summary(self, summary: RunSummary) -> None:
        path = self.run_dir / "summary.json"
        summary.summary_path = str(path)
        summary.stages = summary.stages or self._log.entries
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(summary.model_dump_json(indent=2))
