"""``tenancy``: a project (tenant) on a shared cluster, its names and its quota.

With a ``tenancy`` section, ``project`` becomes a tenant: its registered models, Serve
applications and lineage are named ``<project>.<model>``, its routes live under
``/<project>/``, its drivers run in the Ray namespace ``<project>``, and its jobs may
hold at most ``quota.cpus`` / ``quota.gpus`` at once. Without the section nothing is
renamed (the embedded default, one team).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field

from raymlops.config.base import Section

#: what separates a tenant from its model's own name: ``lending.credit``
SEPARATOR = "."


class QuotaConfig(Section):
    #: the most CPUs this project's jobs may hold at once (tasks, actors, placement
    #: groups), within the platform's quota for the project (`raymlops quota set`)
    cpus: float | None = Field(None, gt=0.0)
    gpus: float | None = Field(None, ge=0.0)
    #: how often a running job checks the project's holdings against the quota
    check_interval_s: float = Field(2.0, gt=0.0)
    #: consecutive checks over the quota before the job is stopped (a short burst passes)
    tolerance_checks: int = Field(3, ge=1)


class TenancyConfig(Section):
    #: the MLflow workspace named after the project (a tracking server started with
    #: ``mlflow server --enable-workspaces``): the server scopes experiments, models
    #: and artifacts to it
    mlflow_workspace: bool = False
    quota: QuotaConfig = Field(default_factory=QuotaConfig)


def qualify(raw: dict[str, Any]) -> dict[str, Any]:
    """Before validation: with ``tenancy``, ``deploy.name`` gets the project prefix and
    ``deploy.route_prefix`` the project's path. Idempotent (a recorded config loads
    unchanged), and a name or prefix of another project is an error naming the key."""
    if not isinstance(raw, dict) or raw.get("tenancy") is None:
        return raw
    project = raw.get("project")
    deploy = raw.get("deploy")
    if not isinstance(project, str) or not isinstance(deploy, dict) or \
            not isinstance(deploy.get("name"), str):
        return raw  # the field validators say what is missing
    tenancy = raw.get("tenancy")
    if isinstance(tenancy, dict) and tenancy.get("mlflow_workspace"):
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", project) or len(project) > 63:
            raise ValueError(f"project: {project!r} is not an MLflow workspace name "
                             "(tenancy.mlflow_workspace): lowercase letters, digits and "
                             "'-', 2 to 63 characters")
        uri = str((raw.get("tracking") or {}).get("uri") or "")
        if not uri.startswith(("http://", "https://")):
            raise ValueError("tenancy.mlflow_workspace: needs tracking.uri to be an MLflow "
                             "server started with --enable-workspaces (http://...); a "
                             f"database URI ({uri or 'the local default'}) ignores workspaces")
    experiment = (raw.get("tracking") or {}).get("experiment")
    if experiment is not None and str(experiment) != project and not str(
            experiment).startswith((f"{project}{SEPARATOR}", f"{project}/")):
        raise ValueError(f"tracking.experiment: {experiment!r} is outside project "
                         f"{project!r}'s experiments ({project}, {project}/...)")
    if SEPARATOR in project:
        raise ValueError(f"project: {project!r} cannot contain {SEPARATOR!r} with tenancy "
                         f"(it separates the project from a model's name)")
    name = deploy["name"]
    owner, sep, short = name.partition(SEPARATOR)
    if sep and owner != project:
        raise ValueError(f"deploy.name: {name!r} belongs to project {owner!r}, not {project!r}"
                         f"; name the model without a prefix, e.g. {short!r}")
    if not sep:
        short = name
    prefix = deploy.get("route_prefix") or f"/{project}/{short}"
    if not str(prefix).startswith(f"/{project}/"):
        raise ValueError(f"deploy.route_prefix: {prefix!r} is outside project {project!r}'s "
                         f"routes (/{project}/...)")
    standard = deploy.get("standard_paths", "never")
    if standard != "never":
        raise ValueError(f"deploy.standard_paths: {standard!r}: a project's application never "
                         "takes the cluster's root route (/invocations, /v2/...); use never")
    return {**raw, "deploy": {**deploy, "name": f"{project}{SEPARATOR}{short}",
                              "route_prefix": prefix, "standard_paths": "never"}}
