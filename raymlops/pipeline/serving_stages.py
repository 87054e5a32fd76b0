"""The serving stages as the driver runs them: deploy (through a change record), monitor."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from raymlops.lineage.store import Event
from raymlops.monitoring.monitor import MonitorResult
from raymlops.registry.mlflow_registry import Registration
from raymlops.serving.deploy import DeployResult

if TYPE_CHECKING:
    from raymlops.pipeline.stages import Context

log = logging.getLogger("raymlops.pipeline")


def _deploy(ctx: Context) -> DeployResult:
    """Serve the version in the first environment, through a change record."""
    from raymlops.pipeline.promotion import environments, implement_with
    from raymlops.registry.mlflow_registry import alias_version

    reg: Registration = ctx["register"]
    env = environments(ctx.config)[0]
    current = alias_version(reg.model_name, env.name)
    change = ctx.services.gov.open_change(
        model=reg.model_name, version=reg.version, env=env.name, kind="deployment",
        from_version=current, requester=ctx.actor, approvers=[],
        verdict={"passed": ctx["evaluate"].gate_passed,
                 "reasons": ctx["evaluate"].gate_reasons},
        rollback_to=current if current != reg.version else None,
        reason=f"run {ctx.run_id}: its gates pass")
    obj = f"model:{reg.model_name}/{reg.version}@{env.name}"
    ctx.services.record(actor=ctx.actor, action="change_requested", obj=obj,
                        reason=f"{change.id}: run {ctx.run_id} deploys to {env.name}",
                        payload=change.to_dict())
    ctx.services.gov.advance(change.id, "approved", actor=ctx.automatic,
                             reason=f"{env.name} needs no approval")
    ctx.services.record(actor=ctx.automatic, action="change_approved", obj=obj,
                        reason=f"{change.id}: its gates pass and {env.name} needs no approval")
    _, result = implement_with(ctx.services, change, reg.model_name, reg.version, env,
                               actor=ctx.automatic, tracking_uri=ctx.tracking_uri,
                               deploy=True, approvers=[])
    return result.model_copy(update={"env": env.name, "change": change.id})


def _awaiting(ctx: Context) -> None:
    """The gate, then: a first environment that needs approvals is not served by a run."""
    from raymlops.errors import AwaitingApprovalError
    from raymlops.pipeline.model_stages import _gate
    from raymlops.pipeline.promotion import environments

    _gate(ctx)
    env = environments(ctx.config)[0]
    if env.approvals.required > 0:
        reg: Registration = ctx["register"]
        raise AwaitingApprovalError(
            f"{reg.model_name} version {reg.version} passed its gates and waits for "
            f"{env.approvals.required} approval(s) for {env.name}: raymlops approve "
            f"{reg.model_name} {reg.version} --env {env.name}, then raymlops promote "
            f"{reg.model_name} {reg.version} --to {env.name}")


def _deploy_events(ctx: Context, dep: DeployResult) -> list[Event]:
    reg: Registration = ctx["register"]
    log.info("rollout decision for %s v%s: %s", reg.model_name, reg.version, dep.reason)
    return [Event("model_deployed", {
        "endpoint": dep.endpoint, "weights": dep.weights, "previous_weights": dep.previous_weights,
        "reason": dep.reason, "since": dep.since, "env": dep.env, "app": dep.app,
        "change": dep.change, "deploy_version": dep.deploy_version,
        "placement": dep.placement, "placement_reason": dep.placement_reason},
        model_name=reg.model_name,
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
                   app=ctx["deploy"].app,
                   flush=lambda: flush_capture(ctx["deploy"].app, [reg.version]))


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
