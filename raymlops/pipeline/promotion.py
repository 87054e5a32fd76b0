"""Promotions and rollbacks: the service beside the driver.

``promote`` moves a version one environment up: it refuses, naming what is missing,
when the previous environment was skipped, a gate of the target environment fails
(re-evaluated on the version's own holdout rows, against the target's current
version), or approvals are missing. Every promotion, deployment and rollback opens a
change record, and every step, alias change and refusal is written to the audit trail.
The shared parts are in ``raymlops.pipeline.services``, approvals in
``raymlops.pipeline.approvals``; both are re-exported here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from raymlops.config import EnvironmentConfig
from raymlops.errors import GateRejectedError, NotFoundError
from raymlops.lineage.governance import Change
from raymlops.names import DATASET_DIGEST_TAG
from raymlops.pipeline.approvals import approve, valid_approvers
from raymlops.pipeline.services import (
    AUDIT_HEAD_TAG,
    AUTHOR_TAG,
    CHANGE_TAG,
    Services,
    _current,
    _refuse,
    app_name,
    environment,
    environments,
    gates_of,
    move_aliases,
    record_stopped,
    set_alias,
    witness_in_registry,
)

log = logging.getLogger("raymlops.promotion")

__all__ = ["AUDIT_HEAD_TAG", "AUTHOR_TAG", "CHANGE_TAG", "Services", "app_name", "approve",
           "environment", "environments", "gates_of", "implement", "implement_with",
           "judge", "move_aliases", "promote", "record_stopped", "rollback", "set_alias",
           "valid_approvers", "witness_in_registry"]


def _was_in(services: Services, name: str, version: str, env: str) -> bool:
    return any(c.state in ("implemented", "rolled_back") and c.to_version == str(version)
               and c.env == env for c in services.gov.changes(name))


def _holdout(services: Services, name: str, version: str) -> Path:
    run_id = services.store.run_for_model_version(name, version)
    record = services.store.get_stage(run_id, "preprocess") if run_id else None
    if record is None or not Path(record.outputs["test"]).is_dir():
        raise NotFoundError(f"{name} version {version}: its holdout split is not in "
                            f"{services.store.url}; the target's gates cannot be judged")
    return Path(record.outputs["test"])


def judge(services: Services, name: str, version: str, env: EnvironmentConfig,
          tracking_uri: str) -> Any:
    """The target environment's gates on the version's holdout rows, against the version
    the environment serves now."""
    from raymlops.evaluation.evaluate import evaluate

    current = _current(services, name, env.name)
    config = services.config.model_copy(update={"gates": gates_of(services.config, env)})
    run_dir = services.workspace.root / "promotions" / f"{name}-{version}-{env.name}"
    champion = None if current in (None, str(version)) else {
        "version": current, "model_uri": f"models:/{name}/{current}"}
    return evaluate(config, test_dir=_holdout(services, name, version),
                    model_uri=f"models:/{name}/{version}", tracking_uri=tracking_uri,
                    run_dir=run_dir, champion=champion)


def promote(services: Services, name: str, version: str, env: str, *, actor: str,
            tracking_uri: str, deploy: bool = True) -> Change:
    """Move ``version`` into ``env`` (one environment up), or refuse naming why."""
    from raymlops.names import GATE_TAG
    from raymlops.registry import mlflow_registry as registry
    from raymlops.tenancy import Tenant

    name = Tenant.of(services.config).own(name, "promote")
    index, target = environment(services.config, env)
    envs = environments(services.config)
    obj = f"model:{name}/{version}@{env}"
    tags = registry.version_tags(name, version)
    current = _current(services, name, env)
    change = services.gov.open_change(
        model=name, version=version, env=env, kind="promotion", from_version=current,
        requester=actor, approvers=[], verdict={}, rollback_to=current,
        reason=f"promote {name} version {version} to {env}")
    services.record(actor=actor, action="change_requested", obj=obj,
                    reason=f"{change.id}: promote to {env}", payload=change.to_dict())
    if tags.get(GATE_TAG) == "rejected":
        _refuse(services, change, actor=actor, action="promotion_refused", obj=obj,
                reason=f"{name} version {version} was rejected by its gates",
                error=GateRejectedError)
    if index > 0 and not _was_in(services, name, version, envs[index - 1].name):
        _refuse(services, change, actor=actor, action="promotion_refused", obj=obj,
                reason=f"{name} version {version} never ran in {envs[index - 1].name}, the "
                       f"environment before {env}: promote it there first")
    verdict = judge(services, name, version, target, tracking_uri)
    services.store.add_event(change.id, "promote", "gate_verdict", {
        "passed": verdict.gate_passed, "reasons": verdict.gate_reasons, "rules": verdict.rules,
        "metrics": verdict.metrics, "champion": verdict.champion, "env": env,
        "change": change.id}, model_name=name, model_version=str(version),
        dataset_digest=tags.get(DATASET_DIGEST_TAG))
    log.info("gate verdict for %s v%s in %s: %s, because %s", name, version, env,
             "PASS" if verdict.gate_passed else "REJECT", "; ".join(verdict.gate_reasons))
    if not verdict.gate_passed:
        failed = [r["reason"] for r in verdict.rules if not r.get("passed")]
        _refuse(services, change, actor=actor, action="promotion_refused", obj=obj,
                reason=f"a gate of {env} fails: {'; '.join(failed)}", error=GateRejectedError,
                verdict={"passed": False, "reasons": verdict.gate_reasons,
                         "rules": verdict.rules, "env": env})
    approvers = valid_approvers(services, name, version, target, tags.get(AUTHOR_TAG))
    if len(approvers) < target.approvals.required:
        who = f" with the role {target.approvals.role!r}" if target.approvals.role else ""
        _refuse(services, change, actor=actor, action="promotion_refused", obj=obj,
                reason=f"{env} needs {target.approvals.required} approval(s){who}, not by the "
                       f"author; {name} version {version} has {len(approvers)} "
                       f"({', '.join(approvers) or 'none'}): raymlops approve {name} "
                       f"{version} --env {env}")
    services.gov.advance(change.id, "approved", actor=actor,
                         reason=f"gates of {env} pass; approvals {approvers or 'not needed'}",
                         approvers=approvers,
                         verdict={"passed": True, "reasons": verdict.gate_reasons,
                                  "rules": verdict.rules, "env": env})
    services.record(actor=actor, action="change_approved", obj=obj,
                    reason=f"{change.id}: gates pass ({'; '.join(verdict.gate_reasons)}); "
                           f"approvers {approvers}", payload={"rules": verdict.rules})
    return implement(services, change, name, version, target, actor=actor,
                     tracking_uri=tracking_uri, deploy=deploy, approvers=approvers)


def implement(services: Services, change: Change, name: str, version: str,
              env: EnvironmentConfig, *, actor: str, tracking_uri: str, deploy: bool,
              approvers: list[str]) -> Change:
    """Serve ``version`` in ``env`` at 100%, move the aliases, close the change record."""
    return implement_with(services, change, name, version, env, actor=actor,
                          tracking_uri=tracking_uri, deploy=deploy, approvers=approvers,
                          emit=True)[0]


def implement_with(services: Services, change: Change, name: str, version: str,
                   env: EnvironmentConfig, *, actor: str, tracking_uri: str, deploy: bool,
                   approvers: list[str], emit: bool = False) -> tuple[Change, Any]:
    """``implement``, returning the deployment result too (None when not deployed).

    ``emit``: write the ``model_deployed`` lineage event here (a promotion); the driver's
    deploy stage emits its own through the stage mechanism."""
    from raymlops.registry import mlflow_registry as registry

    result = None
    if deploy:
        from raymlops.serving.deploy import deploy as serve_deploy

        settings = services.config.deploy.model_copy(
            update={"name": app_name(services.config, env.name)})
        result = serve_deploy(settings, versions={str(version): f"models:/{name}/{version}"},
                              weights={str(version): 100.0}, tracking_uri=tracking_uri,
                              capture_root=services.workspace.capture_dir)
        services.record(actor=actor, action="deployed", obj=f"app:{result.app}",
                        reason=f"{result.reason}; placement {result.placement}: "
                               f"{result.placement_reason}",
                        payload={"endpoint": result.endpoint, "weights": result.weights,
                                 "placement": result.placement})
        if emit:
            services.store.add_event(change.id, "promote", "model_deployed", {
                "endpoint": result.endpoint, "weights": result.weights,
                "previous_weights": result.previous_weights, "reason": result.reason,
                "since": result.since, "env": env.name, "app": result.app,
                "change": change.id, "deploy_version": result.deploy_version,
                "placement": result.placement, "placement_reason": result.placement_reason},
                model_name=name, model_version=str(version))
    move_aliases(services, name, version, env.name, actor=actor, reason=change.id)
    registry.set_tag(name, version, CHANGE_TAG, change.id)
    done = services.gov.advance(change.id, "implemented", actor=actor,
                                reason=f"{name} version {version} serves {env.name}; "
                                       f"approvers {approvers or 'none needed'}")
    services.record(actor=actor, action="change_implemented", obj=f"model:{name}/{version}"
                    f"@{env.name}", reason=f"{change.id}", payload=done.to_dict())
    witness_in_registry(services, name, version)
    return done, result


def rollback(services: Services, name: str, env: str, *, actor: str, tracking_uri: str,
             deploy: bool = True) -> Change:
    """Back to the version the last implemented change into ``env`` replaced. Rollbacks
    themselves are not undone by a rollback: a second one steps further back."""
    from raymlops.tenancy import Tenant

    name = Tenant.of(services.config).own(name, "roll back")
    _, target = environment(services.config, env)
    done = [c for c in services.gov.changes(name) if c.env == env and c.state == "implemented"
            and c.kind != "rollback"]
    if not done or not done[-1].rollback_plan.get("rollback_to"):
        raise NotFoundError(f"{name} has no implemented change in {env} with a version to "
                            "return to")
    last = done[-1]
    back = str(last.rollback_plan["rollback_to"])
    change = services.gov.open_change(
        model=name, version=back, env=env, kind="rollback", from_version=last.to_version,
        requester=actor, approvers=[], verdict={"rollback_of": last.id},
        rollback_to=last.to_version, reason=f"roll back {last.id}")
    services.gov.advance(change.id, "approved", actor=actor,
                         reason=f"a rollback to the version {last.id} replaced")
    services.record(actor=actor, action="change_approved", obj=f"model:{name}/{back}@{env}",
                    reason=f"{change.id}: a rollback needs no approval (it returns to a "
                           f"version {env} served)")
    services.record(actor=actor, action="rollback_requested", obj=f"model:{name}@{env}",
                    reason=f"{change.id}: back to version {back}, undoing {last.id}")
    implemented = implement(services, change, name, back, target, actor=actor,
                            tracking_uri=tracking_uri, deploy=deploy, approvers=[])
    services.gov.advance(last.id, "rolled_back", actor=actor, reason=f"by {change.id}")
    services.record(actor=actor, action="change_rolled_back", obj=f"model:{name}/"
                    f"{last.to_version}@{env}", reason=f"{last.id} rolled back by {change.id}")
    return implemented
