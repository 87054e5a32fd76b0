"""A real ``mlflow server`` on the local PostgreSQL: a fresh database for its backend
store, artifacts proxied by the server (``--artifacts-destination``), as a team runs it."""

from __future__ import annotations

import contextlib
import os
import signal
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
        # no job runner: it and its huey consumers (MLflow 3's GenAI jobs, unused here)
        # are eight processes that took ~23 CPU-seconds at each start; its own session,
        # so that teardown stops every process the server started
        env={**{k: v for k, v in os.environ.items() if k != "MLFLOW_WORKSPACE"},
             "PATH": path, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
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
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):  # a worker that outlived the server
            os.killpg(server.pid, signal.SIGKILL)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
