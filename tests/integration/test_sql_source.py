"""SQL sources through Ray Data's read_sql: SQLite (embedded) and PostgreSQL (team setup).

The same rows read from a database and from Parquet have the same dataset digest: the
digest names content, not where it came from. PostgreSQL must be reachable at
RAYMLOPS_TEST_POSTGRES_URL; without it the test fails saying so, it is not skipped.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from raymlops.config import load_config
from raymlops.data.demo_churn import make_churn_table
from raymlops.data.ingest import ingest
from raymlops.data.sources import Source, resolve_source
from raymlops.errors import DataError
from tests.unit.test_lineage_store import POSTGRES_URL

pytestmark = pytest.mark.integration


def config(source: str, **data):
    return load_config({
        "data": {"source": source, "target": "Churn", "task": "classification",
                 "positive_label": "Yes", "pii": {"phone": "drop"}, **data},
        "train": {"framework": "xgboost"}, "deploy": {"name": "m"}}).data


@pytest.fixture(scope="module")
def table():
    return make_churn_table(1500, seed=21)


@pytest.fixture(scope="module")
def parquet_digest(ray_session, table, tmp_path_factory):
    folder = tmp_path_factory.mktemp("pq")
    table.to_parquet(folder / "t.parquet", index=False)
    data = config(str(folder))
    return ingest(data, source=resolve_source(data, str), run_dir=folder / "run",
                  pii_key=b"k").digest


def test_sqlite_table_ingests_with_the_same_digest(ray_session, table, parquet_digest,
                                                   tmp_path):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    table.to_sql("churn", create_engine(url), index=False)
    data = config(url, table="churn")
    source = resolve_source(data, str)
    assert source.is_sql and source.query == "SELECT * FROM churn"
    result = ingest(data, source=source, run_dir=tmp_path / "run", pii_key=b"k")
    assert result.rows == 1500
    assert result.digest == parquet_digest
    assert "phone" not in result.schema_


@pytest.mark.postgres
def test_postgres_query_ingests_with_the_same_digest(ray_session, table, parquet_digest,
                                                     tmp_path):
    name = f"churn_{uuid.uuid4().hex[:8]}"
    try:
        engine = create_engine(POSTGRES_URL)
        table.to_sql(name, engine, index=False)
    except OperationalError as exc:
        pytest.fail(f"PostgreSQL is required for the team-setup tests and is not reachable at "
                    f"{POSTGRES_URL}: {exc.orig}")
    try:
        data = config(POSTGRES_URL, query=f'SELECT * FROM "{name}"')
        result = ingest(data, source=resolve_source(data, str), run_dir=tmp_path / "run",
                        pii_key=b"k")
        assert result.rows == 1500
        assert result.digest == parquet_digest
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP TABLE IF EXISTS "{name}"'))


def test_bad_query_is_a_data_error_without_the_password(ray_session, tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.sqlite'}"
    create_engine(url).connect().close()
    data = config(url, query="SELECT * FROM missing_table")
    with pytest.raises(DataError, match=r"cannot read sqlite:///.*missing_table"):
        ingest(data, source=resolve_source(data, str), run_dir=tmp_path / "run", pii_key=b"k")
    hidden = Source(url="postgresql+psycopg://u:secret@h/db", query="q").describe()
    assert "secret" not in hidden and "***" in hidden


@pytest.mark.postgres
def test_postgres_numeric_columns_are_numbers_and_their_ranges_apply(ray_session, tmp_path):
    """A NUMERIC column became a top-50 vocabulary, and validation.ranges never saw it."""
    from raymlops.data.validate import validate
    from raymlops.features import RowSpec

    name = f"amounts_{uuid.uuid4().hex[:8]}"
    engine = create_engine(POSTGRES_URL)
    try:
        with engine.begin() as conn:
            conn.execute(text(f'CREATE TABLE "{name}" (id INT, amount NUMERIC(10, 2), '
                              'label INT)'))
            conn.execute(text(f'INSERT INTO "{name}" SELECT g, (g % 97) + 0.25, g % 2 '
                              "FROM generate_series(1, 400) g"))
    except OperationalError as exc:
        pytest.fail(f"PostgreSQL is required at {POSTGRES_URL}: {exc.orig}")
    try:
        data = load_config({
            "data": {"source": POSTGRES_URL, "query": f'SELECT * FROM "{name}"',
                     "target": "label", "task": "classification", "id_column": "id",
                     "validation": {"ranges": {"amount": {"max": 90}},
                                    "max_reject_fraction": 0.2}},
            "train": {"framework": "xgboost"}, "deploy": {"name": "m"}}).data
        result = ingest(data, source=resolve_source(data, str), run_dir=tmp_path / "run",
                        pii_key=b"k")
        assert result.numeric == ["amount"] and result.categorical == []
        assert result.schema_["amount"].startswith("decimal")
        report = validate(data, snapshot=tmp_path / "run" / "data" / "snapshot",
                          schema=result.schema_, spec=RowSpec.from_dict(result.spec),
                          excluded=result.excluded, run_dir=tmp_path / "run")
        over = sum(1 for g in range(1, 401) if (g % 97) + 0.25 > 90)
        assert report.rows_quarantined == over
        assert report.reasons == {"column 'amount' outside [None, 90.0]": over}
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP TABLE IF EXISTS "{name}"'))
