"""Shared test settings: Ray's auth mode is explicit before anything imports Ray."""

from __future__ import annotations

import os
import socket

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def minimal_raw() -> dict:
    return {
        "data": {"source": "x.csv", "target": "y", "task": "classification"},
        "train": {"framework": "xgboost"},
        "deploy": {"name": "m"},
    }
