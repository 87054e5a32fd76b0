"""Where data comes from: files (CSV/Parquet by path, glob or folder) or a SQL database.

A source with a SQLAlchemy URL (``sqlite:///...``, ``postgresql+psycopg://...``) is read
with Ray Data's ``read_sql`` and ``data.query`` (or ``data.table``); anything else is a
path. A source knows its fingerprint (what the driver's input digest covers) and how
to describe itself without leaking a password.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raymlops._internal.io import read_table, resolve_files
from raymlops.config import DataConfig
from raymlops.errors import ConfigError

if TYPE_CHECKING:
    import ray.data

SQL_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mariadb", "mssql", "oracle")


def is_sql_url(source: str) -> bool:
    scheme = source.split(":", 1)[0].split("+", 1)[0].lower()
    return "://" in source and scheme in SQL_SCHEMES


@dataclass(frozen=True)
class Source:
    files: tuple[str, ...] = ()
    url: str | None = None
    query: str | None = None

    @property
    def is_sql(self) -> bool:
        return self.url is not None

    def describe(self) -> str:
        """For logs, lineage and MLflow: file names, or the URL with its password hidden."""
        if self.url is None:
            return ",".join(self.files)[:500]
        from sqlalchemy.engine import make_url

        return f"{make_url(self.url).render_as_string(hide_password=True)} :: {self.query}"

    def fingerprint(self) -> Any:
        """What identifies the input cheaply: path, size and mtime per file, or the query."""
        if self.url is not None:
            return {"sql": self.describe()}
        return [(f, Path(f).stat().st_size, Path(f).stat().st_mtime) for f in self.files]

    def read(self) -> ray.data.Dataset:
        if self.url is None:
            return read_table(list(self.files))
        import ray.data

        # One read task: without shard keys Ray splits the query into many tasks that each
        # scan the result (5 s against 0.07 s for 1,500 rows on 2 cores).
        return ray.data.read_sql(self.query or "", _ConnectionFactory(self.url), parallelism=1)

    def name(self) -> str:
        if self.url is None:
            return Path(self.files[0]).stem
        return (self.query or "query").split()[-1].strip("\"`;")[:60]


class _ConnectionFactory:
    """A picklable DB-API connection factory for ``read_sql`` (runs inside Ray tasks)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __call__(self) -> Any:
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool

        return create_engine(self.url, poolclass=NullPool).raw_connection()


def resolve_source(data: DataConfig, expand: Any) -> Source:
    """Turn ``data.source`` (+ ``data.query`` / ``data.table``) into a readable Source."""
    source = expand(data.source)
    if is_sql_url(source) and data.incremental:
        raise ConfigError("data.incremental: incremental ingestion follows new files; it does "
                          "not apply to a SQL source")
    if is_sql_url(source):
        if not (data.query or data.table):
            raise ConfigError("data.query: a SQL source needs data.query or data.table")
        # data.table is validated as a plain identifier by the config, so this is safe.
        query = data.query or f"SELECT * FROM {data.table}"  # noqa: S608
        return Source(url=source, query=query)
    if data.query or data.table:
        raise ConfigError("data.query / data.table apply to SQL sources only; data.source "
                          f"{source!r} is not a database URL")
    return Source(files=tuple(resolve_files(source, key="data.source")))
