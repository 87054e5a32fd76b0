"""The lineage store: runs, finished stages (for resuming) and lineage events.

One SQLAlchemy schema, so the embedded SQLite file and a team PostgreSQL server run
the same code with another URL; ``raymlops.lineage.migrations`` keeps older stores
current. Events are append-only. A stage record is written when the stage finishes,
after its outputs exist, in the same transaction as the stage's lineage events: a crash
can lose both, never one of them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from raymlops.errors import RetryableError


def utcnow() -> datetime:
    return datetime.now(UTC)


#: 64-bit ids, sizes and counts (SQLite's INTEGER PRIMARY KEY is 64-bit and autoincrements
#: only under that exact type name, hence the variant).
Id = BigInteger().with_variant(Integer, "sqlite")


class _Base(DeclarativeBase):
    """Declarative base of the lineage tables."""


class RunRow(_Base):
    __tablename__ = "raymlops_runs"
    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project: Mapped[str] = mapped_column(String(128), index=True)
    status: Mapped[str] = mapped_column(String(16))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class StageRow(_Base):
    __tablename__ = "raymlops_stages"
    __table_args__ = (UniqueConstraint("run_id", "stage", name="uq_stage_per_run"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(64), index=True)
    stage: Mapped[str] = mapped_column(String(64))
    input_digest: Mapped[str] = mapped_column(String(64))
    outputs: Mapped[dict[str, Any]] = mapped_column(JSON)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    duration_s: Mapped[float] = mapped_column(Float)


class EventRow(_Base):
    __tablename__ = "raymlops_events"
    __table_args__ = (Index("ix_events_model_kind_ts", "model_name", "kind", "ts"),
                      Index("ix_events_model_version_kind", "model_name", "model_version",
                            "kind", "ts"))
    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    ts: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    run_id: Mapped[str] = mapped_column(String(64), index=True)
    stage: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(64), index=True)
    model_name: Mapped[str | None] = mapped_column(String(128), index=True, nullable=True)
    model_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    dataset_digest: Mapped[str | None] = mapped_column(String(80), index=True, nullable=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: the input digest of the stage attempt that wrote the event
    input_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)


class WatermarkRow(_Base):
    """Files a successful run ingested, per watermark key (project + source)."""

    __tablename__ = "raymlops_watermarks"
    __table_args__ = (UniqueConstraint("key", "path", "size", "mtime", name="uq_watermark_file"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(512), index=True)
    path: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime: Mapped[float] = mapped_column(Float)
    run_id: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class StageRecord:
    run_id: str
    stage: str
    input_digest: str
    outputs: dict[str, Any]
    duration_s: float
    finished_at: datetime


@dataclass(frozen=True)
class LineageEvent:
    id: int
    ts: datetime
    run_id: str
    stage: str
    kind: str
    model_name: str | None
    model_version: str | None
    dataset_digest: str | None
    payload: dict[str, Any]
    input_digest: str | None = None


@dataclass(frozen=True)
class Event:
    """A lineage event a stage emits when it runs (not when a resume reuses it)."""

    kind: str
    payload: dict[str, Any]
    model_name: str | None = None
    model_version: str | None = None
    dataset_digest: str | None = None


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()


class LineageStore:
    """Lineage and resume records behind one SQLAlchemy URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_engine(url, future=True, pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":
            _sqlite_pragmas(self.engine)
        from raymlops.lineage.migrations import upgrade

        setup = self.engine
        if self.engine.dialect.name == "sqlite":  # a writer's lock for the schema check
            from raymlops.lineage.sqltx import sqlite_transactions

            setup = create_engine(url, future=True)
            sqlite_transactions(setup, always_immediate=True)
        try:
            self.schema_version = upgrade(setup, _Base.metadata.create_all)
        except OperationalError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise RetryableError(
                f"cannot reach the lineage store at {self.engine.url!r}: {reason}; "
                "check lineage.url and that the database server is running"
            ) from None
        finally:
            if setup is not self.engine:
                setup.dispose()

    def close(self) -> None:
        self.engine.dispose()

    # -- runs -------------------------------------------------------------------------
    def start_run(self, run_id: str, project: str, config: dict[str, Any]) -> bool:
        """Record a run; returns False when the run already existed (a resume). A run
        continues only in the project that started it (PermissionDeniedError)."""
        with Session(self.engine) as s, s.begin():
            row = s.get(RunRow, run_id)
            if row is not None:
                if row.project != project:
                    from raymlops.errors import PermissionDeniedError

                    raise PermissionDeniedError(
                        f"--run-id {run_id}: the run belongs to project {row.project!r}; "
                        f"project {project!r} cannot continue it")
                row.status, row.error, row.finished_at = "running", None, None
                return False
            s.add(RunRow(run_id=run_id, project=project, status="running", config=config,
                         created_at=utcnow()))
            return True

    def finish_run(self, run_id: str, status: str, error: str | None = None) -> None:
        with Session(self.engine) as s, s.begin():
            row = s.get(RunRow, run_id)
            if row is not None:
                row.status, row.error, row.finished_at = status, error, utcnow()

    def run_config(self, run_id: str) -> dict[str, Any] | None:
        with Session(self.engine) as s:
            row = s.get(RunRow, run_id)
            return dict(row.config) if row is not None else None

    # -- stages -----------------------------------------------------------------------
    def get_stage(self, run_id: str, stage: str) -> StageRecord | None:
        with Session(self.engine) as s:
            row = s.scalars(
                select(StageRow).where(StageRow.run_id == run_id, StageRow.stage == stage)
            ).first()
            if row is None:
                return None
            return StageRecord(row.run_id, row.stage, row.input_digest, dict(row.outputs),
                               row.duration_s, row.finished_at)

    def record_stage(self, run_id: str, stage: str, *, input_digest: str,
                     outputs: dict[str, Any], started_at: datetime, duration_s: float,
                     events: Sequence[Event] = ()) -> None:
        """Record a finished stage and its lineage events in one transaction."""
        with Session(self.engine) as s, s.begin():
            row = s.scalars(
                select(StageRow).where(StageRow.run_id == run_id, StageRow.stage == stage)
            ).first()
            if row is None:
                row = StageRow(run_id=run_id, stage=stage)
                s.add(row)
            row.input_digest, row.outputs = input_digest, outputs
            row.started_at, row.finished_at, row.duration_s = started_at, utcnow(), duration_s
            for event in events:
                s.add(self._event_row(run_id, stage, event, input_digest))

    # -- watermarks (incremental ingestion) ----------------------------------------------
    def ingested_files(self, key: str) -> set[tuple[str, int, float]]:
        with Session(self.engine) as s:
            rows = s.scalars(select(WatermarkRow).where(WatermarkRow.key == key))
            return {(r.path, r.size, r.mtime) for r in rows}

    def advance_watermark(self, key: str, files: list[tuple[str, int, float]],
                          run_id: str) -> None:
        known = self.ingested_files(key)
        with Session(self.engine) as s, s.begin():
            for path, size, mtime in files:
                if (path, int(size), float(mtime)) not in known:
                    s.add(WatermarkRow(key=key, path=path, size=size, mtime=mtime,
                                       run_id=run_id, at=utcnow()))

    # -- events -----------------------------------------------------------------------
    @staticmethod
    def _event_row(run_id: str, stage: str, event: Event, input_digest: str | None) -> EventRow:
        return EventRow(ts=utcnow(), run_id=run_id, stage=stage, kind=event.kind,
                        model_name=event.model_name, model_version=event.model_version,
                        dataset_digest=event.dataset_digest, input_digest=input_digest,
                        payload=json.loads(json.dumps(event.payload, default=str)))

    def add_event(self, run_id: str, stage: str, kind: str, payload: dict[str, Any], *,
                  model_name: str | None = None, model_version: str | None = None,
                  dataset_digest: str | None = None, input_digest: str | None = None) -> None:
        event = Event(kind, payload, model_name, model_version, dataset_digest)
        with Session(self.engine) as s, s.begin():
            s.add(self._event_row(run_id, stage, event, input_digest))

    def events(self, *, run_id: str | None = None, model_name: str | None = None,
               kind: str | None = None, model_version: str | None = None,
               before: datetime | None = None, newest_first: bool = False,
               limit: int | None = None) -> list[LineageEvent]:
        """Events, oldest first (or ``newest_first``), filtered in SQL on indexed columns."""
        order = (EventRow.ts.desc(), EventRow.id.desc()) if newest_first else (EventRow.id,)
        query = select(EventRow).order_by(*order)
        if run_id is not None:
            query = query.where(EventRow.run_id == run_id)
        if model_name is not None:
            query = query.where(EventRow.model_name == model_name)
        if kind is not None:
            query = query.where(EventRow.kind == kind)
        if model_version is not None:
            query = query.where(EventRow.model_version == str(model_version))
        if before is not None:
            query = query.where(EventRow.ts <= before)
        if limit is not None:
            query = query.limit(limit)
        with Session(self.engine) as s:
            return [
                LineageEvent(r.id, r.ts, r.run_id, r.stage, r.kind, r.model_name,
                             r.model_version, r.dataset_digest, dict(r.payload), r.input_digest)
                for r in s.scalars(query)
            ]

    def run_for_model_version(self, model_name: str, version: str) -> str | None:
        """The run that registered ``model_name`` version ``version``."""
        with Session(self.engine) as s:
            row = s.scalars(
                select(EventRow).where(EventRow.kind == "model_registered",
                                       EventRow.model_name == model_name,
                                       EventRow.model_version == str(version))
                # the order of ix_events_model_version_kind, so that index answers it
                .order_by(EventRow.ts.desc(), EventRow.id.desc()).limit(1)
            ).first()
            return row.run_id if row is not None else None
