"""The local PostgreSQL the team-setup tests use: its URL, and a throwaway schema."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest

POSTGRES_URL = os.environ.get("RAYMLOPS_TEST_POSTGRES_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@contextlib.contextmanager
def postgres_schema(prefix: str) -> Iterator[str]:
    """A URL whose tables live in a fresh schema, dropped afterwards; the test fails,
    naming the server, when PostgreSQL is not there."""
    from sqlalchemy import create_engine, text

    schema = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(POSTGRES_URL)
    try:
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
    except Exception as exc:  # the server is missing
        pytest.fail(f"PostgreSQL is required at {POSTGRES_URL}: {exc}")
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
