"""A project (tenant) on a shared cluster: which models, routes and lineage are its own.

A tenant's names carry its project as a prefix (``lending.credit``: see
``config/tenancy.py``), so every store keeps working unchanged and ownership is read
from the name. Every command that lists, loads, promotes, serves or reads the lineage of
a model asks :meth:`Tenant.own` first; a name of another project is refused with
:class:`~raymlops.errors.PermissionDeniedError` (exit 7), before any store is read.

Who the caller is comes from ``--project`` / ``$RAYMLOPS_PROJECT`` or from the config's
``project`` (with a ``tenancy`` section). No project means the platform's view, which
sees every tenant: the identity is declared, not verified (verified identities belong
to the governance work); the MLflow server's workspaces (``tenancy.mlflow_workspace``)
scope the registry on the server side as well.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from raymlops.config.tenancy import SEPARATOR
from raymlops.errors import PermissionDeniedError


@dataclass(frozen=True)
class Tenant:
    #: None: the platform's view (every project)
    project: str | None = None

    @classmethod
    def of(cls, config: Any) -> Tenant:
        """The tenant a pipeline config runs as: its project, if it has ``tenancy``."""
        return cls(config.project if getattr(config, "tenancy", None) is not None else None)

    @property
    def namespace(self) -> str | None:
        """The Ray namespace of the project's drivers (and so of their jobs' actors)."""
        return self.project

    def owner(self, name: str) -> str | None:
        """The project a qualified model name belongs to (None: an unqualified name)."""
        owner, sep, _ = name.partition(SEPARATOR)
        return owner if sep else None

    def qualify(self, name: str) -> str:
        """A name as the caller means it: ``credit`` is ``<project>.credit``."""
        if self.project is None or self.owner(name) is not None:
            return name
        return f"{self.project}{SEPARATOR}{name}"

    def own(self, name: str, action: str = "use") -> str:
        """``name`` qualified, if the caller's project owns it; else PermissionDeniedError."""
        qualified = self.qualify(name)
        owner = self.owner(qualified)
        if self.project is not None and owner != self.project:
            raise PermissionDeniedError(
                f"project {self.project!r} cannot {action} model {qualified!r}: it belongs to "
                f"project {owner or 'none'!r}")
        return qualified

    def sees(self, name: str | None) -> bool:
        """Whether a listing shows ``name`` to the caller."""
        return self.project is None or (name is not None and self.owner(name) == self.project)

    def registry_filter(self) -> str:
        """An MLflow ``search_registered_models`` filter for the caller's models."""
        return "" if self.project is None else f"name LIKE '{self.project}{SEPARATOR}%'"


def use_workspace(config: Any) -> str | None:
    """With ``tenancy.mlflow_workspace``: MLflow in this process works in the workspace
    named after the project (created on first use), so the tracking server scopes its
    experiments, models and artifacts to it. Returns the workspace, or None.

    A config without one leaves a workspace the user chose (``$MLFLOW_WORKSPACE``) as it
    is, but drops one that raymlops set for an earlier config in this process, so that a
    notebook switching configs never writes one project's runs into another's
    workspace."""
    tenancy = getattr(config, "tenancy", None)
    import mlflow

    if tenancy is None or not tenancy.mlflow_workspace:
        ours = _SET_BY_US.pop("workspace", None)
        if ours is not None and active_workspace() == ours:
            mlflow.set_workspace(None)
        return None
    from mlflow.exceptions import MlflowException

    from raymlops.errors import RetryableError

    name = str(config.project)
    try:
        known = {w.name for w in mlflow.list_workspaces()}
        if name not in known:
            mlflow.create_workspace(name, description=f"raymlops project {name}")
    except MlflowException as exc:
        if getattr(exc, "error_code", "") == "PERMISSION_DENIED":
            raise PermissionDeniedError(
                f"tenancy.mlflow_workspace: the MLflow server refused workspace {name!r} "
                f"({str(exc).splitlines()[0]}); a server admin creates it") from None
        if getattr(exc, "error_code", "") != "RESOURCE_ALREADY_EXISTS":  # a concurrent run
            raise RetryableError(f"tenancy.mlflow_workspace: cannot reach workspace {name!r} "
                                 f"on the MLflow server: {str(exc).splitlines()[0]}") from exc
    mlflow.set_workspace(name)
    _SET_BY_US["workspace"] = name
    return name


_SET_BY_US: dict[str, str] = {}  # the workspace raymlops itself set in this process


def active_workspace() -> str | None:
    """The MLflow workspace this process works in (``use_workspace``), or None."""
    import os

    return os.environ.get("MLFLOW_WORKSPACE") or None
