"""``serving_at`` on a real SQLite lineage store: every environment, offsets, stops."""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from raymlops import load_config
from raymlops.errors import NotFoundError
from raymlops.lineage.query import serving_at
from raymlops.pipeline import promotion
from raymlops.workspace import Workspace
from tests.postgres import postgres_schema


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def services(request, tmp_path):
    """The same queries on the embedded SQLite file and on the local PostgreSQL."""
    with contextlib.ExitStack() as stack:
        url = f"sqlite:///{tmp_path / 'lineage.db'}"
        if request.param == "postgres":
            url = stack.enter_context(postgres_schema("servingat"))
        config = load_config({
            "data": {"source": "x", "target": "y", "task": "classification"},
            "train": {"framework": "xgboost"}, "deploy": {"name": "m"},
            "lineage": {"url": url},
            "environments": [{"name": "staging"}, {"name": "production"}]})
        services = promotion.Services.open(config, Workspace.at(tmp_path / "w"))
        yield services
        for engine in (services.store.engine, services.gov.engine, services.audit.engine):
            engine.dispose()  # before the schema is dropped


def _deploy(services, version: str, env: str) -> datetime:
    store = services.store
    store.add_event("r1", "register", "model_registered", {"commit": "abc", "author": "ana",
                                                          "config_hash": "sha256:c"},
                    model_name="m", model_version=version, dataset_digest="sha256:d")
    store.add_event("r1", "evaluate", "gate_verdict", {"passed": True, "reasons": ["ok"],
                                                      "env": env},
                    model_name="m", model_version=version)
    change = services.gov.open_change(model="m", version=version, env=env, kind="deployment",
                                      from_version=None, requester="ana", approvers=[],
                                      verdict={}, rollback_to=None, reason="test")
    services.gov.advance(change.id, "implemented", actor="ana", reason="test",
                         approvers=["bob"] if env == "production" else [])
    store.add_event("r1", "deploy", "model_deployed", {"weights": {version: 100.0},
                                                      "env": env, "change": change.id},
                    model_name="m", model_version=version)
    time.sleep(0.01)
    return datetime.now(UTC)


def test_every_environment_is_answered_and_an_offset_is_that_instant(services):
    _deploy(services, "1", "staging")
    after = _deploy(services, "1", "production")
    _deploy(services, "2", "staging")
    now = datetime.now(UTC)
    every = serving_at(services.store, services.gov, "m", now)
    assert {e["env"]: e["versions"][0]["version"] for e in every["environments"]} == {
        "staging": "2", "production": "1"}
    [staging] = [e for e in every["environments"] if e["env"] == "staging"]
    assert staging["versions"][0]["author"] == "ana"
    assert staging["versions"][0]["config_hash"] == "sha256:c"
    # approvers come from the change record that put the version there
    [production] = [e for e in every["environments"] if e["env"] == "production"]
    assert production["versions"][0]["approvers"] == ["bob"]
    assert staging["versions"][0]["approvers"] == []
    # the instant just after production's deploy, written in -05:00 and in +09:00
    for hours in (-5, 9):
        local = after.astimezone(timezone(timedelta(hours=hours)))
        [answer] = serving_at(services.store, services.gov, "m", local,
                              "production")["environments"]
        assert answer["versions"][0]["version"] == "1"
    with pytest.raises(NotFoundError):
        serving_at(services.store, services.gov, "m",
                   (after - timedelta(hours=1)).astimezone(timezone(timedelta(hours=3))),
                   "production")


def test_serving_that_stopped_is_reported_as_stopped_and_audited(services):
    _deploy(services, "1", "production")
    promotion.record_stopped(services, "m", "production", actor="driver", run="r1",
                             reason="the driver exited")
    [answer] = serving_at(services.store, services.gov, "m", datetime.now(UTC),
                          "production")["environments"]
    assert answer["serving"] is False and answer["versions"] == []
    assert answer["reason"] == "the driver exited"
    assert [e.action for e in services.audit.entries()][-1] == "serving_stopped"
    assert services.audit.verify().ok
