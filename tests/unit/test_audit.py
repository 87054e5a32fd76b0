"""The audit trail: a hash chain that names the first bad entry, on SQLite and PostgreSQL."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
from sqlalchemy import text

from raymlops.lineage.audit import AUDIT, AuditTrail, read_witness
from tests.postgres import postgres_schema


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'audit.db'}"
        return
    with postgres_schema("audit") as pg_url:
        yield pg_url


def _filled(url: str, tmp_path: Path, n: int = 6) -> AuditTrail:
    trail = AuditTrail(url, witness=tmp_path / "audit-head.json")
    for i in range(n):
        trail.append(actor="ana", action="promote", obj=f"model:m/{i}",
                     reason=f"step {i}", payload={"i": i, "share": 0.1 * i})
    return trail


def _sql(trail: AuditTrail, statement: str, **params) -> None:
    with trail.engine.begin() as conn:
        conn.execute(text(statement), params)


def test_an_intact_log_verifies(url, tmp_path):
    trail = _filled(url, tmp_path)
    result = trail.verify()
    assert result.ok and result.entries == 6 and result.head[0] == 6
    assert read_witness(tmp_path / "audit-head.json") == result.head


def test_an_edited_entry_is_named(url, tmp_path):
    trail = _filled(url, tmp_path)
    _sql(trail, "UPDATE raymlops_audit SET reason = 'nothing to see' WHERE seq = 3")
    result = trail.verify()
    assert not result.ok and result.first_bad == 3 and "changed" in result.problem


def test_an_edited_payload_is_named(url, tmp_path):
    trail = _filled(url, tmp_path)
    with trail.engine.begin() as conn:
        conn.execute(AUDIT.update().where(AUDIT.c.seq == 4).values(payload={"i": 99}))
    assert trail.verify().first_bad == 4


def test_a_deleted_entry_is_named(url, tmp_path):
    trail = _filled(url, tmp_path)
    _sql(trail, "DELETE FROM raymlops_audit WHERE seq = 2")
    result = trail.verify()
    assert not result.ok and result.first_bad == 2 and "missing" in result.problem


def test_an_inserted_entry_is_named(url, tmp_path):
    """Renumbering to make room breaks the hashes; copying a row's hash breaks the link."""
    trail = _filled(url, tmp_path)
    _sql(trail, "UPDATE raymlops_audit SET seq = seq + 100 WHERE seq >= 4")
    _sql(trail, "UPDATE raymlops_audit SET seq = seq - 99 WHERE seq >= 104")
    with trail.engine.begin() as conn:
        row = conn.execute(AUDIT.select().where(AUDIT.c.seq == 3)).first()
        conn.execute(AUDIT.insert().values(**{**row._mapping, "seq": 4,
                                              "reason": "forged approval"}))
    result = trail.verify()
    assert not result.ok and result.first_bad == 4


def test_reordered_entries_are_named(url, tmp_path):
    trail = _filled(url, tmp_path)
    _sql(trail, "UPDATE raymlops_audit SET seq = 100 WHERE seq = 2")
    _sql(trail, "UPDATE raymlops_audit SET seq = 2 WHERE seq = 5")
    _sql(trail, "UPDATE raymlops_audit SET seq = 5 WHERE seq = 100")
    result = trail.verify()
    assert not result.ok and result.first_bad == 2


def test_a_truncated_tail_is_caught_by_the_witness(url, tmp_path):
    trail = _filled(url, tmp_path)
    _sql(trail, "DELETE FROM raymlops_audit WHERE seq >= 5")
    result = trail.verify()
    assert not result.ok and result.first_bad == 5 and "cut" in result.problem
    # and by any other witness, e.g. a head recorded in a registry tag
    bare = AuditTrail(url)
    assert bare.verify().ok  # without a witness, the cut chain looks whole...
    seen = bare.verify([("tag raymlops.audit_head of m/3", 6, "x" * 64)])
    assert not seen.ok and "cut" in seen.problem  # ...the tag says it was longer


def _append_many(url: str, worker: int, count: int) -> None:
    trail = AuditTrail(url)
    for i in range(count):
        trail.append(actor=f"worker-{worker}", action="register", obj=f"model:m/{i}",
                     reason="concurrent", payload={"worker": worker})
    trail.close()


def test_concurrent_appenders_make_one_contiguous_chain(url, tmp_path):
    AuditTrail(url).close()  # the table exists before the workers race
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_many, args=(url, w, 25)) for w in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)
        assert process.exitcode == 0
    result = AuditTrail(url).verify()
    assert result.ok, result.problem
    assert result.entries == 100 and result.head[0] == 100


def test_an_entry_in_a_callers_transaction_moves_the_witness_only_after_it_commits(url,
                                                                                   tmp_path):
    """A rolled-back transaction leaves no entry, so the witness must not name it (a
    verify would then report a cut tail that never existed); and it must not move before
    the commit either, when another reader cannot see the entry yet."""
    from raymlops.lineage.sqltx import write_transaction

    trail = _filled(url, tmp_path, n=2)
    with pytest.raises(RuntimeError), write_transaction(trail.engine) as conn:
        trail.append(actor="a", action="x", obj="o", reason="r", conn=conn)
        assert read_witness(trail.witness)[0] == 2  # not yet
        raise RuntimeError("the caller fails after appending")
    assert read_witness(trail.witness)[0] == 2
    assert trail.verify().ok
    with write_transaction(trail.engine) as conn:
        trail.append(actor="a", action="x", obj="o", reason="r", conn=conn)
        trail.append(actor="a", action="y", obj="o", reason="r", conn=conn)
        assert read_witness(trail.witness)[0] == 2
    assert read_witness(trail.witness)[0] == 4
    assert trail.verify().ok


def test_a_reader_does_not_block_an_appender(url, tmp_path):
    """On SQLite, reads begin a plain transaction: a verify or a listing in progress
    must not hold the write lock that appenders need."""
    trail = _filled(url, tmp_path, n=3)
    other = AuditTrail(url, witness=tmp_path / "audit-head.json")
    with trail.engine.connect() as reader:
        reader.execute(AUDIT.select()).fetchall()  # a read transaction stays open
        entry = other.append(actor="b", action="z", obj="o", reason="while reading")
    assert entry.seq == 4 and trail.verify().ok
