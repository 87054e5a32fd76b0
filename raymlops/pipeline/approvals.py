"""Approvals: who approved which version for which environment.

``approve`` refuses (and audits the refusal) when the approver lacks the policy's role,
or is the model's author where the policy separates duties. An approval counts only if
the hash-chained audit trail holds it too.
"""

from __future__ import annotations

import logging
from typing import Any

from raymlops.config import EnvironmentConfig
from raymlops.pipeline.services import AUTHOR_TAG, Services, _refuse, environment

log = logging.getLogger("raymlops.promotion")


def approve(services: Services, name: str, version: str, env: str, *, actor: str,
            comment: str = "") -> dict[str, Any]:
    from raymlops.names import GATE_TAG
    from raymlops.registry import mlflow_registry as registry
    from raymlops.tenancy import Tenant

    name = Tenant.of(services.config).own(name, "approve")
    _, environment_ = environment(services.config, env)
    obj = f"model:{name}/{version}@{env}"
    tags = registry.version_tags(name, version)
    policy = environment_.approvals
    if tags.get(GATE_TAG) == "rejected":
        _refuse(services, None, actor=actor, action="approval_refused", obj=obj,
                reason=f"{name} version {version} was rejected by its gates; a rejected "
                       "candidate is never approved")
    if policy.role is not None and actor not in services.config.governance.roles.get(
            policy.role, []):
        _refuse(services, None, actor=actor, action="approval_refused", obj=obj,
                reason=f"{actor} does not hold the role {policy.role!r} that approvals for "
                       f"{env} need (governance.roles.{policy.role})")
    author = tags.get(AUTHOR_TAG)
    if not policy.author_may_approve and author == actor:
        _refuse(services, None, actor=actor, action="approval_refused", obj=obj,
                reason=f"{actor} trained {name} version {version} and may not approve it "
                       f"for {env} (separation of duties: "
                       f"environments.{env}.approvals.author_may_approve is false)")
    # the approvals row and its audit entry in one transaction: both or neither
    with services.gov.lock(f"approval:{obj}") as conn:
        already = [a for a in services.gov.approvals(name, version, env)
                   if a["approver"] == actor]
        audited = [e for e in services.audit.entries(obj=obj, action="approved")
                   if e.actor == actor]
        if not already:
            services.gov.approve(name, version, env, actor, comment)
        if not audited:
            services.record(actor=actor, action="approved", obj=obj,
                            reason=comment or f"approved for {env}",
                            payload={"author": author}, conn=conn)
    approvals = services.gov.approvals(name, version, env)
    return {"model": name, "version": str(version), "env": env, "approver": actor,
            "new": not already, "approvals": approvals, "required": policy.required}


def valid_approvers(services: Services, name: str, version: str,
                    env: EnvironmentConfig, author: str | None) -> list[str]:
    policy = env.approvals
    # an approval counts only if the hash-chained audit trail holds it too: a row slipped
    # into the approvals table does not authorize anything
    audited = {e.actor for e in services.audit.entries(obj=f"model:{name}/{version}@{env.name}",
                                                        action="approved")}
    recorded = {a["approver"] for a in services.gov.approvals(name, version, env.name)}
    for stray in sorted(recorded - audited):
        log.warning("approval of %s version %s for %s by %s is not in the audit trail; "
                    "ignored", name, version, env.name, stray)
    people = sorted(recorded & audited)
    if policy.role is not None:
        people = [p for p in people if p in services.config.governance.roles.get(policy.role, [])]
    if not policy.author_may_approve:
        people = [p for p in people if p != author]
    return people
