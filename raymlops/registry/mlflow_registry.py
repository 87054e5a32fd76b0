"""The MLflow model registry: idempotent registration, aliases, and name resolution.

A version is the registration of one MLflow training run's model, made by one attempt
of a pipeline run: it carries the source MLflow run, the ``raymlops.run_id`` tag and
the ``raymlops.input_digest`` of the register stage's inputs. A retried registration
of the same model finds the version it made before instead of adding another; a run
resumed with other inputs (``--set train.params...``) trained another model, and gets
a new version for it, never the old one.
"""

from __future__ import annotations

import logging
import re
import time

from pydantic import BaseModel

from raymlops.errors import NotFoundError, RegistryConflictError, RetryableError
from raymlops.names import INPUT_DIGEST_TAG, RUN_TAG

log = logging.getLogger(__name__)

CHALLENGER = "challenger"
CHAMPION = "champion"
PREVIOUS = "previous"
_SPEC = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)(?:@(?P<alias>[\w-]+)|/(?P<version>\d+))?$"
)


class Registration(BaseModel):
    model_name: str
    version: str
    model_uri: str
    created: bool
    mlflow_run_id: str = ""


def _client():  # type: ignore[no-untyped-def]
    import mlflow

    return mlflow.MlflowClient()


def find_version(name: str, *, run_id: str, mlflow_run_id: str,
                 input_digest: str) -> str | None:
    """The version this attempt registered before: same MLflow run, run id and inputs."""
    from mlflow.exceptions import MlflowException

    try:
        versions = _client().search_model_versions(
            f"name='{name}' and run_id='{mlflow_run_id}'")
    except MlflowException as exc:
        # Not "no version yet": an unreadable registry must not lead to a duplicate.
        raise RetryableError(f"cannot search the MLflow registry for {name!r}: "
                             f"{str(exc).splitlines()[0]}") from exc
    mine = [v for v in versions if (v.tags or {}).get(RUN_TAG) == run_id
            and (v.tags or {}).get(INPUT_DIGEST_TAG) == input_digest]
    if len(mine) > 1:
        raise RegistryConflictError(
            f"model {name!r} has {len(mine)} versions of MLflow run {mlflow_run_id} made by "
            f"run {run_id} with the same inputs; delete the extra ones in the MLflow UI")
    return str(mine[0].version) if mine else None


def register(name: str, *, model_uri: str, run_id: str, mlflow_run_id: str,
             input_digest: str, tags: dict[str, str]) -> Registration:
    import mlflow

    existing = find_version(name, run_id=run_id, mlflow_run_id=mlflow_run_id,
                            input_digest=input_digest)
    if existing is not None:
        log.info("registry: %s version %s is MLflow run %s's model, registered by an earlier "
                 "attempt of run %s; reusing it", name, existing, mlflow_run_id, run_id)
        return Registration(model_name=name, version=existing, created=False,
                            model_uri=f"models:/{name}/{existing}", mlflow_run_id=mlflow_run_id)
    result = mlflow.register_model(model_uri, name, await_registration_for=60, tags={
        RUN_TAG: run_id, INPUT_DIGEST_TAG: input_digest, **tags})
    _wait_ready(name, str(result.version))
    log.info("registry: registered %s version %s from MLflow run %s (run %s)", name,
             result.version, mlflow_run_id, run_id)
    return Registration(model_name=name, version=str(result.version), created=True,
                        model_uri=f"models:/{name}/{result.version}", mlflow_run_id=mlflow_run_id)


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


def alias_version(name: str, alias: str) -> str | None:
    """The version an alias points at, or None (no such alias, or no such model)."""
    from mlflow.exceptions import MlflowException

    try:
        return str(_client().get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise RetryableError(f"cannot read {name}@{alias} from the MLflow registry: "
                             f"{str(exc).splitlines()[0]}") from exc


def record_verdict(name: str, version: str, *, passed: bool, reasons: list[str],
                   threshold: dict[str, object]) -> None:
    """The gate verdict, its reasons and the decision threshold, as tags of the version."""
    from raymlops.names import GATE_REASONS_TAG, GATE_TAG, THRESHOLD_TAG

    client = _client()
    client.set_model_version_tag(name, version, GATE_TAG, "passed" if passed else "rejected")
    client.set_model_version_tag(name, version, GATE_REASONS_TAG, "; ".join(reasons)[:5000])
    if threshold.get("value") is not None:
        client.set_model_version_tag(name, version, THRESHOLD_TAG, str(threshold["value"]))


def version_tags(name: str, version: str) -> dict[str, str]:
    from mlflow.exceptions import MlflowException

    try:
        return dict(_client().get_model_version(name, str(version)).tags or {})
    except MlflowException as exc:
        raise NotFoundError(f"{name}/{version}: not in the registry "
                            f"({str(exc).splitlines()[0]})") from None


def set_tag(name: str, version: str, key: str, value: str) -> None:
    _client().set_model_version_tag(name, str(version), key, value)


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
