"""The lineage store on SQLite (embedded default) and on PostgreSQL (team setup).

The PostgreSQL case runs against the server at RAYMLOPS_TEST_POSTGRES_URL (default
127.0.0.1:5432, database test). Where the server is missing it fails with a message
that says so: a team-setup test never passes by skipping.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime

import pytest

from raymlops.errors import RetryableError
from raymlops.lineage.query import chain_for, deployments
from raymlops.lineage.store import LineageStore

POSTGRES_URL = os.environ.get("RAYMLOPS_TEST_POSTGRES_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    if request.param == "sqlite":
        yield LineageStore(f"sqlite:///{tmp_path / 'lineage.db'}")
        return
    try:
        store = LineageStore(POSTGRES_URL)
    except RetryableError as exc:
        pytest.fail(f"PostgreSQL is required for the team-setup tests and is not reachable "
                    f"at {POSTGRES_URL}: {exc}. Start it, or set RAYMLOPS_TEST_POSTGRES_URL.")
    yield store
    store.close()


def test_stage_records_round_trip_and_update(store):
    run = f"run-{uuid.uuid4().hex[:8]}"
    assert store.start_run(run, "p", {"a": 1}) is True
    assert store.start_run(run, "p", {"a": 1}) is False  # a resume, not a second run
    assert store.get_stage(run, "ingest") is None
    now = datetime.now(UTC)
    store.record_stage(run, "ingest", input_digest="d1", outputs={"rows": 3}, started_at=now,
                       duration_s=1.5)
    store.record_stage(run, "ingest", input_digest="d2", outputs={"rows": 4}, started_at=now,
                       duration_s=2.0)
    record = store.get_stage(run, "ingest")
    assert record is not None
    assert (record.input_digest, record.outputs, record.duration_s) == ("d2", {"rows": 4}, 2.0)
    store.finish_run(run, "succeeded")
    assert store.run_config(run) == {"a": 1}


def test_events_link_dataset_run_model_and_deployment(store):
    run = f"run-{uuid.uuid4().hex[:8]}"
    model = f"model-{uuid.uuid4().hex[:6]}"
    store.start_run(run, "p", {})
    store.add_event(run, "ingest", "dataset_ingested", {"rows": 10}, dataset_digest="sha256:x")
    store.add_event(run, "register", "model_registered", {"uri": "u"}, model_name=model,
                    model_version="2", dataset_digest="sha256:x")
    store.add_event(run, "deploy", "model_deployed", {"weights": {"2": 100.0},
                    "endpoint": "http://h/m/invocations", "since": "t"}, model_name=model,
                    model_version="2", dataset_digest="sha256:x")
    assert store.run_for_model_version(model, "2") == run
    chain = chain_for(store, model, "2")
    assert [s["kind"] for s in chain["steps"]] == ["dataset_ingested", "model_registered",
                                                  "model_deployed"]
    assert chain["dataset_digest"] == "sha256:x"
    assert deployments(store, model)[0]["weights"] == {"2": 100.0}


def test_unreachable_database_is_a_clear_retryable_error():
    with pytest.raises(RetryableError, match="cannot reach the lineage store"):
        LineageStore("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")


def test_watermark_remembers_ingested_files_per_key(store):
    key = f"p:{uuid.uuid4().hex[:6]}"
    assert store.ingested_files(key) == set()
    store.advance_watermark(key, [("/in/a.csv", 10, 1.5), ("/in/b.csv", 20, 2.5)], "r1")
    store.advance_watermark(key, [("/in/b.csv", 20, 2.5), ("/in/c.csv", 5, 3.0)], "r2")
    assert store.ingested_files(key) == {("/in/a.csv", 10, 1.5), ("/in/b.csv", 20, 2.5),
                                         ("/in/c.csv", 5, 3.0)}
    assert store.ingested_files("other") == set()
