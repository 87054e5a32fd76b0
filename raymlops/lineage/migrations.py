"""Schema versions of the lineage store, applied in order when a store is opened.

``raymlops_schema`` records each applied version. A store made before versions existed
(its tables exist, the version table does not) is at version 0. The DDL goes through
Alembic's operations (the library MLflow also uses for its own store), so one migration
runs on SQLite and PostgreSQL alike; on PostgreSQL a transaction-level advisory lock
keeps two processes from migrating at once.

1. Sizes, counts and ids become 64-bit. The watermark's file size was a 32-bit INTEGER:
   on PostgreSQL an input of 2 GiB or more failed the run at its very end. (SQLite's
   INTEGER is already 64-bit: nothing to change there.)
2. Events carry the input digest of the stage attempt that wrote them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import BigInteger, Connection, DateTime, Integer, MetaData, String, inspect, text
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

VERSION_TABLE = "raymlops_schema"
_LOCK_KEY = 0x7261796D6C6F7073  # "raymlops"


def _bigints(conn: Connection, ops: object) -> None:
    if conn.dialect.name != "postgresql":
        return
    columns = {"raymlops_watermarks": ("size", "id"), "raymlops_stages": ("id",),
               "raymlops_events": ("id",)}
    existing = inspect(conn)
    for table, names in columns.items():
        if not existing.has_table(table):
            continue
        for name in names:
            ops.alter_column(table, name, type_=BigInteger(),  # type: ignore[attr-defined]
                             existing_type=Integer())
            if name == "id":
                conn.execute(text(f"ALTER SEQUENCE IF EXISTS {table}_id_seq AS BIGINT"))


def _event_input_digest(conn: Connection, ops: object) -> None:
    existing = inspect(conn)
    if not existing.has_table("raymlops_events"):
        return
    if "input_digest" not in {c["name"] for c in existing.get_columns("raymlops_events")}:
        from sqlalchemy import Column

        ops.add_column("raymlops_events",  # type: ignore[attr-defined]
                       Column("input_digest", String(64), nullable=True))


def _event_indexes(conn: Connection, ops: object) -> None:
    existing = inspect(conn)
    if not existing.has_table("raymlops_events"):
        return
    names = {i["name"] for i in existing.get_indexes("raymlops_events")}
    for name, columns in INDEXES.items():
        if name not in names:
            ops.create_index(name, "raymlops_events", columns)  # type: ignore[attr-defined]


#: What "which version served at time T" and "the chain behind a version" look up, so
#: both stay fast over millions of events.
INDEXES = {"ix_events_model_kind_ts": ["model_name", "kind", "ts"],
           "ix_events_model_version_kind": ["model_name", "model_version", "kind", "ts"]}


MIGRATIONS: list[tuple[int, str, Callable[[Connection, object], None]]] = [
    (1, "64-bit sizes, counts and ids", _bigints),
    (2, "events carry their stage attempt's input digest", _event_input_digest),
    (3, "indexes for serving-at and lineage queries", _event_indexes),
]
LATEST = MIGRATIONS[-1][0]


def create_tables(engine: Engine, meta: MetaData) -> None:
    """``meta.create_all`` in one transaction that processes opening the store at once
    take in turn (an advisory lock on PostgreSQL, whose concurrent CREATE TABLEs collide
    on the catalog; the engine's IMMEDIATE begin on SQLite)."""
    from raymlops.lineage.sqltx import write_transaction

    with write_transaction(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
        meta.create_all(conn)


def upgrade(engine: Engine, create_tables: Callable[[Connection], None]) -> int:
    """Bring the store at ``engine`` to the latest schema version; returns that version.

    One transaction, serialized between processes (an advisory lock on PostgreSQL; on
    SQLite the caller's engine begins IMMEDIATE), so two stores opened at once cannot
    both create a table."""
    from alembic.migration import MigrationContext
    from alembic.operations import Operations
    from sqlalchemy import Column, Table, select

    meta = MetaData()
    versions = Table(VERSION_TABLE, meta, Column("version", Integer, primary_key=True),
                     Column("description", String(200)),
                     Column("applied_at", DateTime(timezone=True)))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
        legacy = inspect(conn).has_table("raymlops_runs")
        versioned = inspect(conn).has_table(VERSION_TABLE)
        meta.create_all(conn)
        current = conn.execute(select(versions.c.version).order_by(
            versions.c.version.desc())).scalar()
        if current is None:
            current = 0 if (legacy and not versioned) else LATEST
            if current == LATEST:
                conn.execute(versions.insert().values(version=LATEST, description="created",
                                                      applied_at=datetime.now(UTC)))
        ops = Operations(MigrationContext.configure(conn))
        for number, description, step in MIGRATIONS:
            if number <= current:
                continue
            log.info("lineage store: migrating to schema version %d (%s)", number, description)
            step(conn, ops)
            conn.execute(versions.insert().values(version=number, description=description,
                                                  applied_at=datetime.now(UTC)))
            current = number
        create_tables(conn)
    return current
