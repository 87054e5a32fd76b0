"""Concurrent registrations and promotions: no duplicate, no lost version, one champion.

16 processes register versions of one model at once, then 2 promote different versions
at once; on the embedded default (MLflow on SQLite, lineage on SQLite) and on the team
setup (a real ``mlflow server`` on PostgreSQL, lineage on PostgreSQL). The audit trail
stays one contiguous chain through all of it.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import mlflow
import pytest

from tests.mlflow_server import mlflow_server

pytestmark = pytest.mark.integration
NAME = "race-model"


class _Constant(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return [0.5] * len(model_input)


def _config(lineage_url: str, tracking_uri: str):
    from raymlops import load_config

    return load_config({
        "data": {"source": "x", "target": "y", "task": "classification"},
        "train": {"framework": "xgboost"}, "deploy": {"name": NAME},
        "tracking": {"uri": tracking_uri}, "lineage": {"url": lineage_url}})


def _register(tracking_uri: str, lineage_url: str, model_uri: str, mlflow_run: str,
              worker: int) -> None:
    from raymlops.lineage.governance import GovernanceStore
    from raymlops.registry.mlflow_registry import register

    mlflow.set_tracking_uri(tracking_uri)
    gov = GovernanceStore(lineage_url)
    with gov.registry_lock(NAME):  # as the register stage does
        register(NAME, model_uri=model_uri, run_id=f"run-{worker}", mlflow_run_id=mlflow_run,
                 input_digest=f"digest-{worker}", tags={})
    # a retry of the same attempt finds its version instead of adding one
    with gov.registry_lock(NAME):  # as the register stage does
        again = register(NAME, model_uri=model_uri, run_id=f"run-{worker}",
                         mlflow_run_id=mlflow_run, input_digest=f"digest-{worker}", tags={})
    assert not again.created


def _promote(tracking_uri: str, lineage_url: str, root: str, version: str) -> None:
    from raymlops.pipeline.promotion import Services, move_aliases
    from raymlops.workspace import Workspace

    mlflow.set_tracking_uri(tracking_uri)
    services = Services.open(_config(lineage_url, tracking_uri), Workspace.at(root))
    # the product's own step of a promotion into the last environment: its alias,
    # champion and previous, as one move
    move_aliases(services, NAME, version, "production", actor=f"promoter-{version}",
                 reason="concurrency test")


def _race(tracking_uri: str, lineage_url: str, root: Path) -> None:
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("race")
    with mlflow.start_run() as run:
        info = mlflow.pyfunc.log_model(name="model", python_model=_Constant())
    # forkserver: each worker is a fresh process (no inherited connections), forked from
    # a server that imported MLflow once, instead of 16 interpreters importing it at once
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["mlflow", "mlflow.pyfunc", "sqlalchemy",
                                    "raymlops.registry.mlflow_registry",
                                    "raymlops.pipeline.promotion", __name__])
    # 16 registrations, and two more that are the same attempts as two of them (a
    # retried step racing its first try): still 16 versions
    workers = [context.Process(target=_register, args=(tracking_uri, lineage_url,
                                                       info.model_uri, run.info.run_id, w))
               for w in [*range(16), 0, 1]]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=300)
        assert process.exitcode == 0
    client = mlflow.MlflowClient()
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{NAME}'"))
    assert versions == list(range(1, 17))  # none lost, none doubled
    promoters = [context.Process(target=_promote, args=(tracking_uri, lineage_url, str(root), v))
                 for v in ("3", "7")]
    for process in promoters:
        process.start()
    for process in promoters:
        process.join(timeout=300)
        assert process.exitcode == 0
    champion = str(client.get_model_version_by_alias(NAME, "champion").version)
    previous = str(client.get_model_version_by_alias(NAME, "previous").version)
    assert {champion, previous} == {"3", "7"}
    # the environment's alias moved with the champion: they agree, whichever won
    assert str(client.get_model_version_by_alias(NAME, "production").version) == champion
    from raymlops.lineage.audit import AuditTrail

    trail = AuditTrail(lineage_url, witness=root / "audit-head.json")
    result = trail.verify()
    assert result.ok, result.problem
    champion_moves = list(trail.entries(obj_prefix=f"alias:{NAME}@champion"))
    assert [e.payload["version"] for e in champion_moves][-1] == champion
    assert len(champion_moves) == 2


def test_on_the_embedded_default(tmp_path):
    _race(f"sqlite:///{tmp_path / 'mlflow.db'}", f"sqlite:///{tmp_path / 'lineage.db'}",
          tmp_path)


@pytest.mark.postgres
def test_on_postgresql_behind_a_real_mlflow_server(tmp_path):
    with mlflow_server(tmp_path, prefix="raymlops_race") as server:
        _race(server.tracking_uri, server.database, tmp_path)
