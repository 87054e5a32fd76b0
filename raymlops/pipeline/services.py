"""The governed actions' shared parts: environments, the stores they write (lineage,
approvals and changes, audit), audited alias moves, and refusals.

The config names environments in order (``staging``, then ``production``); without any,
there is one, ``production``. Each has its own gates, approval policy, registry alias
(its name) and Serve application (``deploy.name`` for the last one, ``<name>-<env>``
before it), so staging and production serve side by side. The last environment's
version is also the ``champion`` (and the one it replaced, ``previous``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from raymlops.config import EnvironmentConfig, GatesConfig, PipelineConfig
from raymlops.errors import NotFoundError, PermissionDeniedError
from raymlops.lineage.audit import AuditTrail
from raymlops.lineage.governance import Change, GovernanceStore
from raymlops.lineage.store import LineageStore
from raymlops.workspace import Workspace

log = logging.getLogger("raymlops.promotion")

AUTHOR_TAG = "raymlops.author"
AUDIT_HEAD_TAG = "raymlops.audit_head"
CHANGE_TAG = "raymlops.change"


def environments(config: PipelineConfig) -> list[EnvironmentConfig]:
    return list(config.environments) or [EnvironmentConfig(name="production")]


def environment(config: PipelineConfig, name: str) -> tuple[int, EnvironmentConfig]:
    envs = environments(config)
    for i, env in enumerate(envs):
        if env.name == name:
            return i, env
    raise NotFoundError(f"--env {name!r}: no such environment; the config has "
                        f"{[e.name for e in envs]}")


def gates_of(config: PipelineConfig, env: EnvironmentConfig) -> GatesConfig:
    """The gates a version must pass to enter ``env``: the config's ``gates`` plus the
    environment's own."""
    return config.gates.merged(env.gates)


def app_name(config: PipelineConfig, env: str) -> str:
    """The Serve application (and route prefix) of an environment."""
    last = environments(config)[-1].name
    return config.deploy.name if env == last else f"{config.deploy.name}-{env}"


@dataclass
class Services:
    """The stores a governed action writes: lineage, approvals and changes, audit."""

    config: PipelineConfig
    workspace: Workspace
    store: LineageStore
    gov: GovernanceStore
    audit: AuditTrail

    @classmethod
    def open(cls, config: PipelineConfig, workspace: Workspace) -> Services:
        url = config.lineage.url or workspace.lineage_url
        workspace.ensure()
        return cls(config, workspace, LineageStore(url), GovernanceStore(url),
                   AuditTrail(url, witness=workspace.root / "audit-head.json"))

    def record(self, *, actor: str, action: str, obj: str, reason: str,
               payload: dict[str, Any] | None = None, conn: Any = None) -> None:
        entry = self.audit.append(actor=actor, action=action, obj=obj, reason=reason,
                                  payload=payload, conn=conn)
        log.info("audit %d: %s %s %s: %s", entry.seq, actor, action, obj, reason)


def set_alias(services: Services, name: str, alias: str, version: str, *, actor: str,
              reason: str) -> str | None:
    """Move an alias under the registry lock, and audit it (MLflow keeps no history of
    alias changes, mlflow#2169); returns the version it pointed at before."""
    from raymlops.registry import mlflow_registry as registry

    with services.gov.lock(f"alias:{name}@{alias}") as conn:
        before = registry.alias_version(name, alias)
        if before != str(version):
            registry.set_alias(name, alias, str(version))
            services.record(actor=actor, action="alias_set", obj=f"alias:{name}@{alias}",
                            reason=reason, payload={"version": str(version),
                                                    "previous": before}, conn=conn)
    return before


def move_aliases(services: Services, name: str, version: str, env: str, *, actor: str,
                 reason: str) -> str | None:
    """The environment's alias, and for the last environment ``champion`` and
    ``previous``, moved as one step under the model's lock: two promotions at once
    leave exactly one champion, the environment's alias on it, and ``previous`` on the
    version it replaced. Returns the version the environment's alias left."""
    from raymlops.registry import mlflow_registry as registry

    with services.gov.lock(f"aliases:{name}"):
        before = set_alias(services, name, env, version, actor=actor, reason=reason)
        if env == environments(services.config)[-1].name:
            replaced = set_alias(services, name, registry.CHAMPION, version, actor=actor,
                                 reason=f"{reason}: {env} is the last environment")
            if replaced is not None and replaced != str(version):
                set_alias(services, name, registry.PREVIOUS, replaced, actor=actor,
                          reason=f"{reason}: the champion it replaced")
    return before


def record_stopped(services: Services, name: str, env: str, *, actor: str, reason: str,
                   run: str) -> None:
    """Serving of ``name`` in ``env`` ended (the local Ray that held it stopped), so that
    ``serving-at`` does not report a version serving after its endpoint is gone."""
    app = app_name(services.config, env)
    services.store.add_event(run, "serve", "serving_stopped",
                             {"env": env, "app": app, "reason": reason}, model_name=name)
    services.record(actor=actor, action="serving_stopped", obj=f"app:{app}", reason=reason,
                    payload={"model": name, "env": env})


def witness_in_registry(services: Services, name: str, version: str) -> None:
    """The audit chain's head as a tag of the version: a second witness, outside the table."""
    from raymlops.registry import mlflow_registry as registry

    head = services.audit.head()
    if head is not None:
        registry.set_tag(name, version, AUDIT_HEAD_TAG, f"{head[0]}:{head[1]}")


def _current(services: Services, name: str, env: str) -> str | None:
    from raymlops.registry import mlflow_registry as registry

    return registry.alias_version(name, env)


def _refuse(services: Services, change: Change | None, *, actor: str, action: str, obj: str,
            reason: str, error: type[Exception] = PermissionDeniedError,
            verdict: dict[str, Any] | None = None) -> None:
    if change is not None:
        services.gov.advance(change.id, "rejected", actor=actor, reason=reason,
                             verdict=verdict)
    services.record(actor=actor, action=action, obj=obj, reason=reason,
                    payload={"change": change.id if change else None})
    raise error(reason)
