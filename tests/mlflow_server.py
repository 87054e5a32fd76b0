"""A real ``mlflow server`` on the local PostgreSQL: a fresh database for its backend
store, artifacts proxied by the server (``--artifacts-destination``), as a team runs it."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, text

from tests.conftest import free_port
from tests.postgres import POSTGRES_URL


@dataclass(frozen=True)
class MlflowServer:
    tracking_uri: str  # http://127.0.0.1:PORT
    database: str  # the backend store's URL (a database of its own)
    artifacts: Path  # where the server keeps artifacts; clients never touch it


@contextlib.contextmanager
def mlflow_server(root: Path, prefix: str = "raymlops", *, workspaces: bool = False
                  ) -> Iterator[MlflowServer]:
    """``workspaces``: started with ``--enable-workspaces`` (tenants' workspaces)."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # the server is missing
        pytest.fail(f"PostgreSQL is required at {POSTGRES_URL}: {exc}")
    database = POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    port = free_port()
    artifacts = root / "server-artifacts"
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", database,
         "--artifacts-destination", str(artifacts), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "2",
         *(["--enable-workspaces"] if workspaces else [])],
        env={**{k: v for k, v in os.environ.items() if k != "MLFLOW_WORKSPACE"},
             "PATH": path}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and server.poll() is None:
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).ok:
                    break
            except requests.RequestException:  # not up yet, or slow on a loaded machine
                time.sleep(0.5)
        assert server.poll() is None, server.stderr.read().decode()[-3000:] if server.stderr \
            else "mlflow server exited"
        yield MlflowServer(f"http://127.0.0.1:{port}", database, artifacts)
    finally:
        server.terminate()
        server.wait(timeout=60)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
