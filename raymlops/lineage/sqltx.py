"""Transactions the governance tables share: who waits for whom, and what runs after.

On SQLite, pysqlite's own transaction handling is switched off (SQLAlchemy's recipe) and
raymlops begins its transactions itself: a plain ``BEGIN`` for reads, so a reader never
blocks a writer, and ``BEGIN IMMEDIATE`` for writes (``write_transaction``), so a writer
holds the database's write lock from its first read (the chain's head, the latest
version) to its commit. On PostgreSQL, writers take advisory locks instead.

A writer's transaction may carry hooks that run only after it really committed
(``after_commit``): the audit witness must never name an entry that a rollback undid.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import MetaData, create_engine, event
from sqlalchemy.engine import Connection, Engine

_WRITE = "raymlops_write"
_HOOKS = "raymlops_after_commit"


def sqlite_transactions(engine: Engine, *, always_immediate: bool = False) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        write = always_immediate or conn.get_execution_options().get(_WRITE)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def writer_engine(url: str, meta: MetaData) -> Engine:
    """An engine for tables that several processes write (``meta``'s, created here)."""
    from raymlops.lineage.migrations import create_tables

    engine = create_engine(url, future=True, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        sqlite_transactions(engine)
    create_tables(engine, meta)
    return engine


@contextlib.contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """One write transaction (IMMEDIATE on SQLite). Hooks registered on it with
    ``after_commit`` run once it has committed, and never after a rollback."""
    hooks: list[Callable[[], None]] = []
    with engine.connect() as conn:
        conn.execution_options(**{_WRITE: True})
        conn.info[_HOOKS] = hooks
        try:
            with conn.begin():
                yield conn
        finally:
            conn.info.pop(_HOOKS, None)
    for hook in hooks:
        hook()


def after_commit(conn: Connection, hook: Callable[[], None]) -> bool:
    """Run ``hook`` after ``conn``'s transaction commits; False when ``conn`` is not a
    ``write_transaction`` (then nothing will run it)."""
    hooks = conn.info.get(_HOOKS)
    if hooks is None:
        return False
    hooks.append(hook)
    return True
