"""The driver: walks the declared stages in order, records each one, resumes where a run stopped.

A finished stage is recorded in the lineage store with the digest of its inputs (the
config sections it reads and its upstream outputs), in the same transaction as the
lineage events it emits. A rerun with the same run id reuses a stage whose record
exists, whose input digest matches, whose output files are still there and, for a
stage whose effect lives outside our store (serving), whose effect is still live; a
reused stage emits no event. Anything else runs again, so a resume with a changed
training parameter retrains, registers a new version and serves it.

The run's status is always closed: succeeded, rejected (a gate), no_new_data, failed,
or interrupted (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from raymlops._internal.ray_runtime import init_ray, ray_running
from raymlops._internal.usage import UsageMeter
from raymlops.config import PipelineConfig, config_snapshot
from raymlops.errors import AwaitingApprovalError, GateRejectedError
from raymlops.lineage.store import Event, LineageStore
from raymlops.pipeline.accounting import record_usage
from raymlops.pipeline.promotion import Services
from raymlops.pipeline.quota_guard import quota_guard
from raymlops.pipeline.stages import STAGES, Context, RecordedData, Stage
from raymlops.tenancy import Tenant
from raymlops.workspace import Workspace, check_run_id, new_run_id

log = logging.getLogger("raymlops.pipeline")


class RunSummary(BaseModel):
    run_id: str
    status: str
    #: one line: what this run did, in words
    message: str = ""
    model_name: str | None = None
    model_version: str | None = None
    #: the version's MLflow registry aliases when the run ended
    aliases: list[str] = []
    metrics: dict[str, float] = {}
    gate: dict[str, Any] = {}
    endpoint: str | None = None
    reports: dict[str, str] = {}
    mlflow_ui: str = ""
    drift: dict[str, Any] = {}
    replay: dict[str, Any] = {}
    stages: dict[str, dict[str, Any]] = {}
    #: what the stages held: CPU- and GPU-seconds, peak memory, spilled bytes
    usage: dict[str, Any] = {}
    summary_path: str = ""


def _digest(value: Any) -> str:
    blob = json.dumps(value, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def _paths_exist(outputs: dict[str, Any]) -> bool:
    """Every absolute local path named in a stage's outputs still exists."""
    for value in outputs.values():
        if isinstance(value, str) and value.startswith("/") and not Path(value).exists():
            return False
    return True


class Pipeline:
    """One run of the whole loop for one config: ``Pipeline(config).run()``.

    With ``recorded``, the run reads that snapshot instead of ``data.source`` (its PII
    protection was applied when it was first ingested) and fails unless the data still
    has the recorded digest: ``raymlops retrain``.
    """

    def __init__(self, config: PipelineConfig, *, workdir: str | Path | None = None,
                 run_id: str | None = None, address: str | None = None,
                 shutdown_ray: bool = True, recorded: RecordedData | None = None,
                 actor: str | None = None, until: str | None = None) -> None:
        from raymlops.lineage.audit import current_actor

        names = [stage.name for stage in STAGES]
        if until is not None and until not in names:
            from raymlops.errors import ConfigError

            raise ConfigError(f"--until {until!r} is not a stage; stages: {', '.join(names)}")
        #: stop after this stage (one `ray job submit` per stage); --run-id continues
        self.until = until if until != names[-1] else None

        self.actor = current_actor(actor)
        self.config = config
        self.recorded = recorded
        self.shutdown_ray = shutdown_ray
        self.workspace = Workspace.at(workdir)
        self.run_id = check_run_id(run_id) if run_id else new_run_id()
        self.address = address
        self.run_dir = self.workspace.run_dir(self.run_id)
        self._store: LineageStore | None = None
        self.stage_log: dict[str, dict[str, Any]] = {}
        self.meter = UsageMeter()
        self.usage: dict[str, Any] = {}

    @property
    def store(self) -> LineageStore:
        if self._store is None:
            self._store = LineageStore(self.config.lineage.url or self.workspace.lineage_url)
        return self._store

    # -- the stage mechanism -------------------------------------------------------------
    def _input_digest(self, stage: Stage, ctx: Context) -> str:
        """The config sections the stage reads, its upstream outputs, and its upstream
        stages' own input digests: a chain, so a change anywhere upstream (one value of
        the data) reaches every stage below, even one whose upstream outputs are only
        paths and counts that did not change."""
        snapshot = config_snapshot(self.config)
        inputs: dict[str, Any] = {name: {"outputs": ctx.results[name].model_dump(mode="json"),
                                         "digest": ctx.digests[name]}
                                  for name in stage.needs}
        if stage.fingerprint is not None:
            inputs["_fingerprint"] = stage.fingerprint(ctx)
        return _digest({"stage": stage.name, "inputs": inputs,
                        "config": {key: snapshot[key] for key in stage.reads}})

    def _run_stage(self, stage: Stage, ctx: Context) -> BaseModel:
        digest = self._input_digest(stage, ctx)
        ctx.digests[stage.name] = digest
        if stage.before is not None:
            stage.before(ctx)
        record = None if stage.always else self.store.get_stage(self.run_id, stage.name)
        if record is not None and record.input_digest == digest and _paths_exist(record.outputs):
            out = stage.output.model_validate(record.outputs)
            if stage.still_valid is None or stage.still_valid(ctx, out):
                log.info("stage %-10s reused: finished in an earlier attempt of run %s (%.1fs)",
                         stage.name, self.run_id, record.duration_s)
                self.stage_log[stage.name] = {"status": "reused", "seconds": record.duration_s}
                return out
            log.info("stage %-10s runs again: what it did in an earlier attempt is not live "
                     "any more", stage.name)
        elif record is not None:
            log.info("stage %-10s runs again: its inputs changed since the earlier attempt",
                     stage.name)
        ctx.input_digest = digest
        started, clock = datetime.now(UTC), time.perf_counter()
        log.info("stage %-10s started", stage.name)
        self.meter.begin(stage.name)
        try:
            out = stage.run(ctx)
        except Exception as exc:
            self.meter.end(stage.name)
            seconds = time.perf_counter() - clock
            self.stage_log[stage.name] = {"status": "failed", "seconds": round(seconds, 2)}
            self._record_failure(stage, ctx, exc, seconds, digest)
            log.error("stage %-10s failed after %.1fs: %s", stage.name, seconds, exc)
            raise
        self.meter.end(stage.name)
        seconds = time.perf_counter() - clock
        events = stage.events(ctx, out)
        self.store.record_stage(self.run_id, stage.name, input_digest=digest,
                                outputs=out.model_dump(mode="json"), started_at=started,
                                duration_s=seconds, events=events)
        self._audit(ctx, stage, events)
        self.stage_log[stage.name] = {"status": "ran", "seconds": round(seconds, 2)}
        log.info("stage %-10s finished in %.1fs", stage.name, seconds)
        return out

    def _record_failure(self, stage: Stage, ctx: Context, exc: Exception, seconds: float,
                        digest: str) -> None:
        events: list[Event] = []
        if stage.on_error is not None:
            try:
                events = stage.on_error(ctx, exc)
            except Exception as inner:  # noqa: BLE001 - the first error is the one to report
                log.warning("stage %s: recording its failure failed too: %s", stage.name, inner)
        events.insert(0, Event("stage_failed", {"error": f"{type(exc).__name__}: {exc}"[:2000],
                                                "seconds": seconds}))
        for event in events:
            self.store.add_event(self.run_id, stage.name, event.kind, event.payload,
                                 model_name=event.model_name, model_version=event.model_version,
                                 dataset_digest=event.dataset_digest, input_digest=digest)
        self._audit(ctx, stage, events)

    def _audit(self, ctx: Context, stage: Stage, events: list[Event]) -> None:
        """Every automatic decision (a stage's events) in the audit trail, with its reason."""
        if ctx.services is None:
            return
        for event in events:
            obj = (f"model:{event.model_name}/{event.model_version}" if event.model_name
                   else f"run:{self.run_id}")
            reason = str(event.payload.get("reason") or "; ".join(
                event.payload.get("reasons", [])) or event.payload.get("error")
                or f"stage {stage.name} of run {self.run_id}")
            ctx.services.record(actor=ctx.automatic, action=event.kind, obj=obj,
                                reason=reason[:2000],
                                payload={"run_id": self.run_id, "stage": stage.name,
                                         "dataset_digest": event.dataset_digest})

    # -- the run ------------------------------------------------------------------------
    def run(self) -> RunSummary:
        from raymlops.data.sources import Source, resolve_source
        from raymlops.features.pii import load_pii_key

        cfg = self.config
        source = (Source(files=tuple(str(p) for p in sorted(self.recorded.snapshot.glob(
            "*.parquet")))) if self.recorded else resolve_source(cfg.data, self.workspace.expand))
        self._preflight()
        self.workspace.ensure()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        resumed = not self.store.start_run(self.run_id, cfg.project, config_snapshot(cfg))
        log.info("run %s %s (workdir %s)", self.run_id, "resumed" if resumed else "started",
                 self.workspace.root)
        try:
            if cfg.data.incremental:
                source = self._new_files_only(source)
                if source is None:
                    return self._nothing_new()
            key, key_ref = load_pii_key(self.workspace.root, cfg.data.pii_key_env)
            ctx = Context(config=cfg, workspace=self.workspace, run_id=self.run_id,
                          run_dir=self.run_dir, source=source, recorded=self.recorded,
                          pii_key=key, key_ref=key_ref, actor=self.actor,
                          services=Services.open(cfg, self.workspace))
            self._stages(ctx)
            if self.until is not None:
                return self._paused(ctx)
            if cfg.data.incremental:
                files = [(str(p), int(s), float(m)) for p, s, m in ctx["ingest"].fingerprint]
                self.store.advance_watermark(self._watermark_key(), files, self.run_id)
            summary = self._summary(ctx)
            self._write_summary(summary)
        except GateRejectedError as exc:
            self.store.finish_run(self.run_id, "rejected", f"{type(exc).__name__}: {exc}")
            ev, reg = ctx["evaluate"], ctx["register"]
            self._write_summary(RunSummary(
                run_id=self.run_id, status="rejected", message=str(exc),
                model_name=reg.model_name, model_version=reg.version,
                gate={"passed": False, "reasons": ev.gate_reasons, "rules": ev.rules},
                metrics=ev.metrics, reports={"model_card": ev.card or "",
                                             "evaluation": ev.report}))
            raise
        except AwaitingApprovalError as exc:
            self.store.finish_run(self.run_id, "awaiting_approval", str(exc))
            ev, reg = ctx["evaluate"], ctx["register"]
            summary = RunSummary(
                run_id=self.run_id, status="awaiting_approval", message=str(exc),
                model_name=reg.model_name, model_version=reg.version, metrics=ev.metrics,
                gate={"passed": True, "reasons": ev.gate_reasons, "rules": ev.rules},
                reports={"model_card": ev.card or "", "evaluation": ev.report})
            self._write_summary(summary)
            return summary
        except BaseException as exc:  # interrupted (KeyboardInterrupt, SIGTERM) or failed
            status = "failed" if isinstance(exc, Exception) else "interrupted"
            self.store.finish_run(self.run_id, status, f"{type(exc).__name__}: {exc}"[:2000])
            log.info("run %s %s; `raymlops run --run-id %s` resumes it", self.run_id, status,
                     self.run_id)
            raise
        self.store.finish_run(self.run_id, "succeeded")
        return summary

    def _stages(self, ctx: Context) -> None:
        """The declared stages in order (up to ``until``), on Ray, within the project's
        namespace and quota; what they used is recorded whatever happens."""
        import mlflow

        from raymlops.tenancy import use_workspace

        cfg = ctx.config
        mlflow.set_tracking_uri(cfg.tracking.uri or self.workspace.mlflow_uri)
        use_workspace(cfg)  # a tenant's MLflow workspace, before any stage reads MLflow
        started_ray = init_ray(self.address, ingress=cfg.deploy.ingress,
                               namespace=Tenant.of(cfg).namespace)
        try:
            with quota_guard(ctx, self.store, self.run_id) as within_quota:
                for stage in STAGES:
                    ctx.results[stage.name] = self._run_stage(stage, ctx)
                    within_quota()
                    if stage.name == self.until:
                        break
        finally:
            self.usage = record_usage(self.meter, ctx, self.store, self.run_id)
            if started_ray and self.shutdown_ray:
                from raymlops._internal.ray_runtime import shutdown_ray

                self._record_stopped(ctx)
                shutdown_ray()

    def _paused(self, ctx: Context) -> RunSummary:
        """Stopped after ``until`` as asked: the next stage's job resumes this run id."""
        message = (f"stopped after stage {self.until} as asked; `raymlops run CONFIG --run-id "
                   f"{self.run_id}` (or the next stage's job) continues from there")
        reg, ev, dep = (ctx.results.get(n) for n in ("register", "evaluate", "deploy"))
        summary = RunSummary(
            run_id=self.run_id, status="paused", message=message,
            model_name=getattr(reg, "model_name", None), model_version=getattr(
                reg, "version", None), metrics=getattr(ev, "metrics", None) or {},
            endpoint=getattr(dep, "endpoint", None), usage=self.usage)
        self._write_summary(summary)
        self.store.finish_run(self.run_id, "paused", message)
        log.info("run %s: %s", self.run_id, message)
        return summary

    def _nothing_new(self) -> RunSummary:
        message = (f"no new files under {self.config.data.source} since the watermark: nothing "
                   "was trained, registered or deployed")
        log.info("run %s: %s", self.run_id, message)
        self.store.add_event(self.run_id, "ingest", "no_new_data",
                             {"source": self.config.data.source, "reason": message})
        self.store.finish_run(self.run_id, "no_new_data")
        summary = RunSummary(run_id=self.run_id, status="no_new_data", message=message)
        self._write_summary(summary)
        return summary

    def _watermark_key(self) -> str:
        return f"{self.config.project}:{self.config.data.source}"

    def _new_files_only(self, source: Any) -> Any:
        """The files no successful run ingested yet; a resumed run keeps its own choice.

        The watermark advances only when a run succeeds, and only with what that run's
        ingest read (fingerprinted when it read it), so the files of a failed run, and
        rows appended to a file while a run was reading it, are picked up by the next.
        """
        from raymlops.data.sources import Source

        earlier = self.store.get_stage(self.run_id, "ingest")
        if earlier is not None:
            return Source(files=tuple(earlier.outputs["files"]))
        seen = self.store.ingested_files(self._watermark_key())
        new = [path for path, size, mtime in source.fingerprint()
               if (path, size, mtime) not in seen]
        changed = sorted({p for p in new if any(p == s[0] for s in seen)})
        if changed:
            log.warning("watermark: %s changed since a run ingested them; each is ingested "
                        "again whole", ", ".join(changed))
        log.info("watermark: %d of %d files under %s are new", len(new), len(source.files),
                 self.config.data.source)
        return Source(files=tuple(new)) if new else None

    def _preflight(self) -> None:
        """Fail in seconds, not after training: a tuning metric the run will never report,
        a port a fresh local cluster cannot serve on."""
        from raymlops.serving.deploy import check_port
        from raymlops.tenancy.quota import check_config
        from raymlops.training.directions import tune_objective

        if self.config.train.tune is not None:
            tune_objective(self.config)
        check_config(self.config)  # a job above its project's quota by itself never fits

        attaching = self.address or os.environ.get("RAY_ADDRESS") or ray_running()
        if not attaching:
            check_port(self.config.deploy)

    def _record_stopped(self, ctx: Context) -> None:
        """This process started the local Ray, so what it deployed stops with it."""
        from raymlops.pipeline.promotion import record_stopped

        deployed = ctx.results.get("deploy")
        if deployed is None or not getattr(deployed, "env", None):
            return
        record_stopped(ctx.services, ctx["register"].model_name, deployed.env,
                       actor=ctx.automatic, run=self.run_id,
                       reason="the driver exited, and the local Ray it started (with Serve) "
                              "stopped; --keep-serving keeps it up")

    def _summary(self, ctx: Context) -> RunSummary:
        from raymlops.registry import mlflow_registry
        from raymlops.training import tracking

        reg, ev, dep, mon = ctx["register"], ctx["evaluate"], ctx["deploy"], ctx["monitor"]
        aliases = sorted(mlflow_registry.aliases_of(reg.model_name, reg.version))
        served = ", ".join(f"version {v} {w:g}%" for v, w in sorted(dep.weights.items()))
        return RunSummary(
            run_id=self.run_id, status="succeeded",
            message=f"{reg.model_name} serves {served} at {dep.endpoint}",
            model_name=reg.model_name, model_version=reg.version, aliases=aliases,
            metrics=ev.metrics, gate={"passed": ev.gate_passed, "reasons": ev.gate_reasons},
            endpoint=dep.endpoint,
            reports={"validation": str(self.run_dir / "data" / "validation.html"),
                     "evaluation": ev.report, "model_card": ev.card or "",
                     "drift": mon.drift_report or "",
                     "drift_html": mon.drift_html or ""},
            mlflow_ui=tracking.mlflow_ui_command(self.config, self.workspace),
            drift={"verdict": mon.drift_verdict, "drifted_columns": mon.drifted_columns},
            replay=mon.replay, stages=self.stage_log, usage=self.usage)

    def _write_summary(self, summary: RunSummary) -> None:
        path = self.run_dir / "summary.json"
        summary.summary_path = str(path)
        summary.stages = summary.stages or self.stage_log
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(summary.model_dump_json(indent=2))
