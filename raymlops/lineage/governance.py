"""Approvals, change records and registry locks, in the lineage store's database.

- An **approval** says who approved which model version for which environment, when.
- A **change record** (as ITIL change management asks) is opened for every promotion,
  rollout and rollback: the model, version, environment, from-version and to-version,
  the requester, the approvers, the gate verdict, the rollback plan (the version to
  return to), and its state (requested, approved, implemented, rolled_back, rejected),
  each state with its time, actor and reason.
- A **lock** serializes check-then-act sequences across processes and machines: a
  transaction-level advisory lock on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite. The
  registry takes one around "find my version, else register", so that concurrent
  registrations never duplicate, and around every alias change.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    select,
    text,
)
from sqlalchemy.engine import Connection, Engine

from raymlops.lineage.sqltx import write_transaction, writer_engine

_meta = MetaData()
_Id = BigInteger().with_variant(Integer, "sqlite")

APPROVALS = Table(
    "raymlops_approvals", _meta,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("model", String(128), nullable=False, index=True),
    Column("version", String(32), nullable=False),
    Column("env", String(64), nullable=False),
    Column("approver", String(128), nullable=False),
    Column("comment", Text, nullable=False, default=""),
    Column("at", DateTime(timezone=True), nullable=False),
)

CHANGES = Table(
    "raymlops_changes", _meta,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("model", String(128), nullable=False, index=True),
    Column("version", String(32), nullable=False),
    Column("env", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("from_version", String(32), nullable=True),
    Column("to_version", String(32), nullable=False),
    Column("requester", String(128), nullable=False),
    Column("approvers", JSON, nullable=False),
    Column("verdict", JSON, nullable=False),
    Column("rollback_plan", JSON, nullable=False),
    Column("state", String(32), nullable=False, index=True),
    Column("history", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

STATES = ("requested", "approved", "implemented", "rolled_back", "rejected")


def change_id(number: int) -> str:
    return f"CHG-{number:06d}"


@dataclass(frozen=True)
class Change:
    id: str
    model: str
    version: str
    env: str
    kind: str
    from_version: str | None
    to_version: str
    requester: str
    approvers: list[str]
    verdict: dict[str, Any]
    rollback_plan: dict[str, Any]
    state: str
    history: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _change(row: Any) -> Change:
    return Change(change_id(int(row.id)), row.model, row.version, row.env, row.kind,
                  row.from_version, row.to_version, row.requester, list(row.approvers),
                  dict(row.verdict), dict(row.rollback_plan), row.state, list(row.history))


class GovernanceStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = writer_engine(url, _meta)
        self._local = threading.local()

    def close(self) -> None:
        self.engine.dispose()

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[Connection]:
        """Hold ``key`` for the length of the block (one transaction). Reentrant within a
        thread: a nested lock joins the outer transaction (on SQLite a second writer
        would wait for the first forever)."""
        number = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
        held = getattr(self._local, "conn", None)
        if held is not None:
            if held.dialect.name == "postgresql":
                held.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": number})
            yield held
            return
        with write_transaction(self.engine) as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": number})
            self._local.conn = conn
            try:
                yield conn
            finally:
                self._local.conn = None

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Connection]:
        """A write: inside this thread's held lock, its transaction; else a new one."""
        held = getattr(self._local, "conn", None)
        if held is not None:
            yield held
            return
        with write_transaction(self.engine) as conn:
            yield conn

    def registry_lock(self, model: str) -> contextlib.AbstractContextManager[Connection]:
        """The lock every registration of ``model`` holds from its idempotency check to
        its create, so a retried or concurrent step never makes a second version."""
        return self.lock(f"registry:{model}")

    # -- approvals -------------------------------------------------------------------
    def approve(self, model: str, version: str, env: str, approver: str,
                comment: str = "") -> None:
        with self._tx() as conn:
            conn.execute(APPROVALS.insert().values(model=model, version=str(version), env=env,
                                                   approver=approver, comment=comment,
                                                   at=datetime.now(UTC)))

    def approvals(self, model: str, version: str, env: str | None = None) -> list[dict[str, Any]]:
        query = select(APPROVALS).where(APPROVALS.c.model == model,
                                        APPROVALS.c.version == str(version))
        if env is not None:
            query = query.where(APPROVALS.c.env == env)
        with self.engine.connect() as conn:
            return [{"approver": r.approver, "env": r.env, "comment": r.comment,
                     "at": r.at.isoformat()} for r in conn.execute(query.order_by(APPROVALS.c.id))]

    # -- change records --------------------------------------------------------------
    def open_change(self, *, model: str, version: str, env: str, kind: str,
                    from_version: str | None, requester: str, approvers: list[str],
                    verdict: dict[str, Any], rollback_to: str | None, reason: str) -> Change:
        now = datetime.now(UTC)
        history = [{"state": "requested", "at": now.isoformat(), "actor": requester,
                    "reason": reason}]
        plan = {"rollback_to": rollback_to,
                "how": (f"raymlops rollback {model} --env {env} (back to version "
                        f"{rollback_to})") if rollback_to else "no earlier version: undeploy"}
        with self._tx() as conn:
            result = conn.execute(CHANGES.insert().values(
                model=model, version=str(version), env=env, kind=kind,
                from_version=from_version, to_version=str(version), requester=requester,
                approvers=approvers, verdict=json.loads(json.dumps(verdict, default=str)),
                rollback_plan=plan, state="requested", history=history, created_at=now,
                updated_at=now))
            key = result.inserted_primary_key
            assert key is not None
            number = int(key[0])
        return self.change(change_id(number))

    def advance(self, change: str, state: str, *, actor: str, reason: str,
                approvers: list[str] | None = None,
                verdict: dict[str, Any] | None = None) -> Change:
        """Move a change record to ``state``; ``approvers`` and ``verdict``, when given,
        are written with it (a promotion learns both only when it is approved)."""
        if state not in STATES:
            raise ValueError(f"unknown change state {state!r}; one of {STATES}")
        number = int(change.removeprefix("CHG-"))
        with self._tx() as conn:
            row = conn.execute(select(CHANGES).where(CHANGES.c.id == number)).first()
            if row is None:
                raise KeyError(change)
            history = [*row.history, {"state": state, "at": datetime.now(UTC).isoformat(),
                                      "actor": actor, "reason": reason}]
            values: dict[str, Any] = {"state": state, "history": history,
                                      "updated_at": datetime.now(UTC)}
            if approvers is not None:
                values["approvers"] = list(approvers)
            if verdict is not None:
                values["verdict"] = json.loads(json.dumps(verdict, default=str))
            conn.execute(CHANGES.update().where(CHANGES.c.id == number).values(**values))
        return self.change(change)

    def change(self, change: str) -> Change:
        found = self.find_change(change)
        if found is None:
            raise KeyError(change)
        return found

    def find_change(self, change: str) -> Change | None:
        number = int(change.removeprefix("CHG-"))
        with self.engine.connect() as conn:
            row = conn.execute(select(CHANGES).where(CHANGES.c.id == number)).first()
        return None if row is None else _change(row)

    def environments(self, model: str) -> list[str]:
        """The environments a change of ``model`` was implemented in (a refused one
        served nothing)."""
        query = select(CHANGES.c.env).where(
            CHANGES.c.model == model,
            CHANGES.c.state.in_(("implemented", "rolled_back"))).distinct()
        with self.engine.connect() as conn:
            return sorted(str(row[0]) for row in conn.execute(query))

    def changes(self, model: str | None = None) -> list[Change]:
        query = select(CHANGES).order_by(CHANGES.c.id)
        if model is not None:
            query = query.where(CHANGES.c.model == model)
        with self.engine.connect() as conn:
            return [_change(row) for row in conn.execute(query)]

    def count_changes(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(CHANGES)).scalar() or 0)
