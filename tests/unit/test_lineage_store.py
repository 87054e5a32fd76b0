"""The lineage store on SQLite (embedded default) and on PostgreSQL (team setup).

The PostgreSQL case runs against the server at RAYMLOPS_TEST_POSTGRES_URL (default
127.0.0.1:5432, database test). Where the server is missing it fails with a message
that says so: a team-setup test never passes by skipping.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from raymlops.errors import RetryableError
from raymlops.lineage.migrations import LATEST
from raymlops.lineage.query import chain_for, deployments
from raymlops.lineage.store import LineageStore
from tests.postgres import POSTGRES_URL, postgres_schema


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
    from raymlops.errors import PermissionDeniedError

    with pytest.raises(PermissionDeniedError, match=r"belongs to project 'p'; project 'q'"):
        store.start_run(run, "q", {"a": 1})  # another project cannot continue it
    assert store.start_run(run, "p", {"a": 1}) is False
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


def test_a_stage_record_and_its_events_land_together(store):
    from raymlops.lineage.store import Event

    run = f"run-{uuid.uuid4().hex[:8]}"
    store.start_run(run, "p", {})
    store.record_stage(run, "ingest", input_digest="d1", outputs={}, started_at=datetime.now(UTC),
                       duration_s=0.1, events=[Event("dataset_ingested", {"rows": 1},
                                                     dataset_digest="sha256:y")])
    [event] = store.events(run_id=run)
    assert (event.kind, event.input_digest, event.dataset_digest) == (
        "dataset_ingested", "d1", "sha256:y")


def test_the_chain_of_a_version_follows_its_own_attempt(store):
    """A run resumed with other params registers version 2; version 1's chain keeps its own
    training and gate, not the run's latest."""
    run = f"run-{uuid.uuid4().hex[:8]}"
    model = f"model-{uuid.uuid4().hex[:6]}"
    store.start_run(run, "p", {})
    store.add_event(run, "ingest", "dataset_ingested", {"rows": 10}, dataset_digest="sha256:x")
    for version, mlflow_run in (("1", "a"), ("2", "b")):
        uri = f"models:/{mlflow_run}"
        store.add_event(run, "train", "model_trained", {"mlflow_run_id": mlflow_run,
                                                        "model_uri": uri})
        store.add_event(run, "evaluate", "gate_verdict", {"passed": True, "model_uri": uri,
                                                          "reasons": [version]})
        store.add_event(run, "register", "model_registered", {"mlflow_run_id": mlflow_run},
                        model_name=model, model_version=version)
    for version, mlflow_run in (("1", "a"), ("2", "b")):
        chain = chain_for(store, model, version)
        steps = {s["kind"]: s["payload"] for s in chain["steps"]}
        assert steps["model_trained"]["mlflow_run_id"] == mlflow_run
        assert steps["gate_verdict"]["reasons"] == [version]
        assert steps["dataset_ingested"]["rows"] == 10


def _legacy_tables(url: str) -> None:
    """The schema before versions existed: 32-bit INTEGER ids and watermark sizes."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE raymlops_runs (run_id VARCHAR(64) PRIMARY KEY, "
                          "project VARCHAR(128), status VARCHAR(16), config JSON, "
                          "created_at TIMESTAMP WITH TIME ZONE, finished_at TIMESTAMP WITH "
                          "TIME ZONE, error TEXT)"))
        conn.execute(text("CREATE TABLE raymlops_events (id SERIAL PRIMARY KEY, ts TIMESTAMP "
                          "WITH TIME ZONE, run_id VARCHAR(64), stage VARCHAR(64), kind "
                          "VARCHAR(64), model_name VARCHAR(128), model_version VARCHAR(32), "
                          "dataset_digest VARCHAR(80), payload JSON)"))
        conn.execute(text("CREATE TABLE raymlops_watermarks (id SERIAL PRIMARY KEY, key "
                          "VARCHAR(512), path TEXT, size INTEGER, mtime FLOAT, run_id "
                          "VARCHAR(64), at TIMESTAMP WITH TIME ZONE)"))
        conn.execute(text("INSERT INTO raymlops_events (ts, run_id, stage, kind, payload) "
                          "VALUES (now(), 'old', 'ingest', 'dataset_ingested', '{}')"))
    engine.dispose()


@pytest.mark.postgres
def test_an_old_postgres_store_is_migrated_to_64_bit_sizes():
    """A 2 GiB input failed the run at its very end: the watermark size was 32-bit."""
    from sqlalchemy import inspect

    with postgres_schema("legacy") as url:
        _legacy_tables(url)
        store = LineageStore(url)
        assert store.schema_version == LATEST
        types = {c["name"]: str(c["type"]) for c in
                 inspect(store.engine).get_columns("raymlops_watermarks")}
        assert types["size"] == "BIGINT"
        store.advance_watermark("k", [("/in/big.parquet", 3 * 2**30, 1.0)], "r")
        assert store.ingested_files("k") == {("/in/big.parquet", 3 * 2**30, 1.0)}
        [old] = store.events(run_id="old")  # kept through the migration
        assert old.input_digest is None
        store.close()
        again = LineageStore(url)
        assert again.schema_version == LATEST  # opening again migrates nothing
        again.close()


def test_a_fresh_store_starts_at_the_latest_schema(tmp_path):
    from sqlalchemy import inspect

    store = LineageStore(f"sqlite:///{tmp_path / 'fresh.db'}")
    assert store.schema_version == LATEST
    store.advance_watermark("k", [("/x", 5 * 2**31, 1.0)], "r")
    assert store.ingested_files("k") == {("/x", 5 * 2**31, 1.0)}
    assert "input_digest" in {c["name"] for c in inspect(store.engine).get_columns(
        "raymlops_events")}
