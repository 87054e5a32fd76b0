"""The audit trail: an append-only, hash-chained log of every mutating action and decision.

Each entry holds its sequence number, time, actor, action, object, reason and payload,
the hash of the entry before it, and its own hash: SHA-256 over a canonical JSON of all
of those. Sequence numbers are contiguous from 1, so an entry that is edited (its hash no
longer matches), deleted (a gap), inserted or reordered (the previous-hash link breaks)
is found by :meth:`AuditTrail.verify`, which names the first bad entry.

Truncating the tail leaves a valid chain, so the head is also written outside the
table, as Certificate Transparency publishes signed tree heads: to a witness file under
the work directory (``audit-head.json``, only ever moved forward) and, by the registry,
into each model version's tags. ``verify`` checks the log against the witnesses it is
given: a log that ends before a witness, or disagrees with it, was cut or rewritten.

Appends from several processes make one contiguous chain: each append takes a lock
(a transaction-level advisory lock on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), reads
the head, and inserts the next entry in the same transaction.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    MetaData,
    String,
    Table,
    Text,
    select,
    text,
)
from sqlalchemy.engine import Connection

from raymlops.lineage.sqltx import after_commit, write_transaction, writer_engine

GENESIS = "0" * 64
USER_ENV = "RAYMLOPS_USER"
_LOCK_KEY = 0x61756469745F6C6F  # "audit_lo"

_meta = MetaData()
AUDIT = Table(
    "raymlops_audit", _meta,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(64), nullable=False, index=True),
    Column("object", String(256), nullable=False, index=True),
    Column("reason", Text, nullable=False),
    Column("payload", JSON, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)


def current_actor(explicit: str | None = None) -> str:
    """Who acts: ``--as``, else ``$RAYMLOPS_USER``, else the OS user. (Verified identities
    come with the governance work; until then this is a claim, and recorded as one.)"""
    return explicit or os.environ.get(USER_ENV) or getpass.getuser()


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    ts: datetime
    actor: str
    action: str
    object: str
    reason: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str

    def expected_hash(self) -> str:
        return entry_hash(self.seq, self.ts, actor=self.actor, action=self.action,
                          obj=self.object, reason=self.reason, payload=self.payload,
                          prev_hash=self.prev_hash)


def entry_hash(seq: int, ts: datetime, *, actor: str, action: str, obj: str, reason: str,
               payload: dict[str, Any], prev_hash: str) -> str:
    stamp = ts.astimezone(UTC).isoformat(timespec="microseconds")
    blob = json.dumps({"seq": seq, "ts": stamp, "actor": actor, "action": action,
                       "object": obj, "reason": reason, "payload": payload,
                       "prev_hash": prev_hash}, sort_keys=True, separators=(",", ":"),
                      default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class Verification:
    ok: bool
    entries: int
    head: tuple[int, str] | None
    #: the first entry that is wrong (or the first missing sequence number)
    first_bad: int | None = None
    problem: str = ""


class AuditTrail:
    """The audit log behind one SQLAlchemy URL (the lineage store's), plus a witness file."""

    def __init__(self, url: str, *, witness: Path | None = None) -> None:
        self.url = url
        self.witness = witness
        self.engine = writer_engine(url, _meta)

    def close(self) -> None:
        self.engine.dispose()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[Connection]:
        with write_transaction(self.engine) as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
            yield conn

    def append(self, *, actor: str, action: str, obj: str, reason: str,
               payload: dict[str, Any] | None = None,
               conn: Connection | None = None) -> AuditEntry:
        """Add one entry at the head of the chain; returns it (with its hash).

        ``conn``: a transaction the caller holds on the same database (a registry lock),
        which the entry joins; on SQLite a second writer would wait for it forever."""
        clean = json.loads(json.dumps(payload or {}, default=str))
        if conn is not None:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
            entry = self._insert(conn, actor=actor, action=action, obj=obj, reason=reason,
                                 clean=clean)
            if self.witness is not None:
                # the head moves once the caller's transaction has committed; a caller
                # without hooks leaves the witness behind, which is safe (it only lags)
                after_commit(conn, lambda: self._advance_witness(entry))
            return entry
        with self._locked() as own:
            entry = self._insert(own, actor=actor, action=action, obj=obj, reason=reason,
                                 clean=clean)
        if self.witness is not None:
            self._advance_witness(entry)
        return entry

    @staticmethod
    def _insert(conn: Connection, *, actor: str, action: str, obj: str, reason: str,
                clean: dict[str, Any]) -> AuditEntry:
        last = conn.execute(select(AUDIT.c.seq, AUDIT.c.hash).order_by(
            AUDIT.c.seq.desc()).limit(1)).first()
        seq, prev = (int(last[0]) + 1, str(last[1])) if last else (1, GENESIS)
        ts = datetime.now(UTC)
        digest = entry_hash(seq, ts, actor=actor, action=action, obj=obj, reason=reason,
                            payload=clean, prev_hash=prev)
        conn.execute(AUDIT.insert().values(seq=seq, ts=ts, actor=actor, action=action,
                                           object=obj, reason=reason, payload=clean,
                                           prev_hash=prev, hash=digest))
        return AuditEntry(seq, ts, actor, action, obj, reason, clean, prev, digest)

    def _advance_witness(self, entry: AuditEntry) -> None:
        """Write the head to the witness file, only ever forward (appenders race)."""
        assert self.witness is not None
        self.witness.parent.mkdir(parents=True, exist_ok=True)
        lock = self.witness.with_suffix(".lock")
        with lock.open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            current = read_witness(self.witness)
            if current is None or current[0] < entry.seq:
                tmp = self.witness.with_suffix(".tmp")
                tmp.write_text(json.dumps({"seq": entry.seq, "hash": entry.hash,
                                           "url": _safe_url(self.url)}))
                tmp.replace(self.witness)

    def head(self) -> tuple[int, str] | None:
        with self.engine.connect() as conn:
            last = conn.execute(select(AUDIT.c.seq, AUDIT.c.hash).order_by(
                AUDIT.c.seq.desc()).limit(1)).first()
        return (int(last[0]), str(last[1])) if last else None

    def entries(self, *, obj_prefix: str | None = None, obj: str | None = None,
                action: str | None = None, limit: int | None = None) -> list[AuditEntry]:
        """Entries in chain order; ``obj`` matches exactly (an index lookup),
        ``obj_prefix`` by prefix."""
        query = select(AUDIT).order_by(AUDIT.c.seq)
        if obj is not None:
            query = query.where(AUDIT.c.object == obj)
        if obj_prefix is not None:
            query = query.where(AUDIT.c.object.startswith(obj_prefix))
        if action is not None:
            query = query.where(AUDIT.c.action == action)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [_entry(row) for row in conn.execute(query)]

    def verify(self, witnesses: list[tuple[str, int, str]] = ()) -> Verification:  # type: ignore[assignment]
        """Walk the chain; ``witnesses`` are (where, seq, hash) heads recorded elsewhere."""
        expected_seq, prev, count, head = 1, GENESIS, 0, None
        hashes: dict[int, str] = {}
        with self.engine.connect() as conn:
            for row in conn.execute(select(AUDIT).order_by(AUDIT.c.seq)).yield_per(10_000):
                entry = _entry(row)
                count += 1
                if entry.seq != expected_seq:
                    return Verification(False, count, head, expected_seq,
                                        f"entry {expected_seq} is missing (deleted?); the "
                                        f"next one is {entry.seq}")
                if entry.prev_hash != prev:
                    return Verification(False, count, head, entry.seq,
                                        f"entry {entry.seq} does not follow entry "
                                        f"{entry.seq - 1} (inserted or reordered)")
                if entry.expected_hash() != entry.hash:
                    return Verification(False, count, head, entry.seq,
                                        f"entry {entry.seq} was changed after it was written "
                                        f"({entry.action} {entry.object})")
                hashes[entry.seq] = entry.hash
                prev, expected_seq, head = entry.hash, entry.seq + 1, (entry.seq, entry.hash)
        if self.witness is not None:
            recorded = read_witness(self.witness)
            if recorded is not None:
                witnesses = [(str(self.witness), *recorded), *witnesses]
        for where, seq, digest in witnesses:
            if head is None or seq > head[0]:
                return Verification(False, count, head, (head[0] + 1) if head else 1,
                                    f"the log ends at entry {head[0] if head else 0}, but "
                                    f"{where} saw entry {seq}: the tail was cut")
            if hashes.get(seq) != digest:
                return Verification(False, count, head, seq,
                                    f"entry {seq} differs from what {where} recorded")
        return Verification(True, count, head)


def _entry(row: Any) -> AuditEntry:
    ts = row.ts if row.ts.tzinfo else row.ts.replace(tzinfo=UTC)
    return AuditEntry(int(row.seq), ts, row.actor, row.action, row.object, row.reason,
                      dict(row.payload), row.prev_hash, row.hash)


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def read_witness(path: Path) -> tuple[int, str] | None:
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return int(data["seq"]), str(data["hash"])
