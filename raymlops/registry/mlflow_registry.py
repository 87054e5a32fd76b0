"""The MLflow model registry: idempotent registration, aliases, and name resolution.

A version carries the ``raymlops.run_id`` tag of the pipeline run that made it, so a
retried registration finds the version it made before instead of adding another.
"""

from __future__ import annotations

import logging
import re
import time

from pydantic import BaseModel

from raymlops.errors import NotFoundError, RegistryConflictError
from raymlops.training.tracking import RUN_TAG

log = logging.getLogger(__name__)

CANDIDATE = "candidate"
CHAMPION = "champion"
_SPEC = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)(?:@(?P<alias>[\w-]+)|/(?P<version>\d+))?$"
)


class Registration(BaseModel):
    model_name: str
    version: str
    model_uri: str
    created: bool


def _client():  # type: ignore[no-untyped-def]
    import mlflow

    return mlflow.MlflowClient()


def find_version_for_run(name: str, run_id: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        versions = _client().search_model_versions(f"name='{name}'")
    except MlflowException:
        return None
    mine = [v for v in versions if (v.tags or {}).get(RUN_TAG) == run_id]
    if len(mine) > 1:
        raise RegistryConflictError(
            f"model {name!r} has {len(mine)} versions tagged with run {run_id}; "
            "delete the extra ones in the MLflow UI"
        )
    return str(mine[0].version) if mine else None


def register(name: str, *, model_uri: str, run_id: str, tags: dict[str, str]) -> Registration:
    import mlflow

    existing = find_version_for_run(name, run_id)
    if existing is not None:
        log.info("registry: %s version %s already made by run %s; reusing it", name, existing,
                 run_id)
        return Registration(model_name=name, version=existing,
                            model_uri=f"models:/{name}/{existing}", created=False)
    result = mlflow.register_model(model_uri, name, tags={RUN_TAG: run_id, **tags},
                                   await_registration_for=60)
    _wait_ready(name, str(result.version))
    log.info("registry: registered %s version %s from run %s", name, result.version, run_id)
    return Registration(model_name=name, version=str(result.version),
                        model_uri=f"models:/{name}/{result.version}", created=True)


def _wait_ready(name: str, version: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    client = _client()
    while True:
        status = client.get_model_version(name, version).status
        if status == "READY":
            return
        if status == "FAILED_REGISTRATION" or time.monotonic() > deadline:
            raise RegistryConflictError(f"model {name} version {version} is {status}")
        time.sleep(0.2)


def set_alias(name: str, alias: str, version: str) -> None:
    _client().set_registered_model_alias(name, alias, version)
    log.info("registry: alias %s@%s now points at version %s", name, alias, version)


def aliases_of(name: str, version: str) -> list[str]:
    return list(_client().get_model_version(name, version).aliases or [])


def resolve(spec: str) -> tuple[str, str]:
    """``NAME``, ``NAME@ALIAS`` or ``NAME/VERSION`` to (name, version).

    A bare name means the ``champion`` alias, or the latest version if there is none.
    """
    from mlflow.exceptions import MlflowException

    match = _SPEC.match(spec)
    if match is None:
        raise NotFoundError(f"{spec!r} is not MODEL, MODEL@ALIAS or MODEL/VERSION")
    name, alias, version = match["name"], match["alias"], match["version"]
    client = _client()
    try:
        if version:
            client.get_model_version(name, version)
            return name, version
        if alias:
            return name, str(client.get_model_version_by_alias(name, alias).version)
        model = client.get_registered_model(name)
    except MlflowException as exc:
        raise NotFoundError(f"{spec}: not in the registry ({exc.message.splitlines()[0]})"
                            ) from None
    if CHAMPION in (model.aliases or {}):
        return name, str(model.aliases[CHAMPION])
    versions = [int(v.version) for v in client.search_model_versions(f"name='{name}'")]
    if not versions:
        raise NotFoundError(f"{spec}: the model has no versions")
    return name, str(max(versions))
