"""Shared test settings: Ray's auth mode is explicit before anything imports Ray."""

from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path

import pytest

from raymlops._internal.ray_runtime import apply_ray_defaults  # imports no Ray

apply_ray_defaults()  # auth mode and Train's poll interval, as raymlops' init_ray sets them
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


# -- shared by integration/ and chaos/: one local Ray per session, started on first use --


@pytest.fixture(scope="session")
def ray_session():
    import ray

    # 4 logical CPUs on the 2-core machine: the session keeps several Serve apps alive
    # across test modules, each holding fractions of a CPU, and Ray Data tasks (file
    # listing, reads) ask for a whole CPU. With num_cpus=2 a later module's reads could
    # never be scheduled. A single `raymlops run` never meets this: it serves only after
    # its last data and training stage.
    # The dashboard is on, as in raymlops' init_ray: Ray Train's placement-group cleaner
    # needs the State API it serves (see raymlops/_internal/ray_runtime.py).
    # Metrics: a known export port, and the agent reporting every second instead of 10,
    # so that the serving metrics test waits a second for a count, not ten.
    ray.init(num_cpus=4, include_dashboard=True, log_to_driver=False,
             logging_level=logging.WARNING, _metrics_export_port=free_port(),
             _system_config={"metrics_report_interval_ms": 1000})
    from raymlops._internal.ray_runtime import quiet_ray

    quiet_ray()
    yield ray
    from ray import serve

    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="session")
def serve_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def demo_run(ray_session, serve_port, tmp_path_factory):
    """``raymlops demo`` through the CLI entry point, on the session's Ray."""
    import contextlib
    import io

    from raymlops.cli import main

    workdir = tmp_path_factory.mktemp("demo-workdir")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["demo", "--workdir", str(workdir), "--port", str(serve_port),
                     "--rows", "12000", "--json"])
    assert code == 0, out.getvalue()
    summary = json.loads(out.getvalue())  # stdout holds the JSON and nothing else
    return {"workdir": Path(workdir), "summary": summary}


LENDING_NUMERIC = ["age", "income", "loan_amount", "credit_score", "debt_to_income",
                   "employment_years", "open_accounts"]
LENDING_CATEGORICAL = ["home_ownership", "purpose", "region", "gender"]


@pytest.fixture(scope="session")
def prepared(ray_session, tmp_path_factory):
    """Accepted rows (label already encoded) through the real split-and-fit stage."""
    from raymlops.config import SplitConfig
    from raymlops.data.demo import make_lending_table
    from raymlops.data.preprocess import preprocess
    from raymlops.features import RowSpec
    from raymlops.names import LABEL

    root = tmp_path_factory.mktemp("training")
    table = make_lending_table(4000, seed=3).drop(columns=["email"])
    accepted = root / "accepted"
    accepted.mkdir()
    table = table.rename(columns={"defaulted": LABEL})
    table[LABEL] = table[LABEL].astype(float)
    table.to_parquet(accepted / "part-0.parquet", index=False)
    prep = preprocess(accepted=accepted, split=SplitConfig(), id_column=None,
                      spec=RowSpec(numeric=LENDING_NUMERIC, categorical=LENDING_CATEGORICAL),
                      clip={}, run_dir=root / "run")
    return {"root": root, "prep": prep}


@pytest.fixture(scope="session")
def serving_models(prepared):
    """Two registered-model stand-ins whose scores differ (10 trees and 2), trained once
    for every serving test: a request scored by the wrong version shows."""
    import pandas as pd

    from raymlops.names import LABEL
    from tests.training_helpers import train_config, train_on

    root = prepared["root"] / "ws-serving"
    first, ws, _ = train_on(prepared, train_config("xgboost", params={"num_boost_round": 10}),
                            "serving-v1", workdir=root)
    second, _, _ = train_on(prepared, train_config("xgboost", params={"num_boost_round": 2}),
                            "serving-v2", workdir=root)
    rows = pd.read_parquet(prepared["prep"].test).drop(columns=[LABEL]).head(200)
    return {"ws": ws, "uris": {"1": first.model_uri, "2": second.model_uri}, "rows": rows,
            "features": prepared["prep"].features}
