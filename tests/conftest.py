"""Shared test settings: Ray's auth mode is explicit before anything imports Ray."""

from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from raymlops._internal.ray_runtime import apply_ray_defaults  # imports no Ray

apply_ray_defaults()  # auth mode and Train's poll interval, as raymlops' init_ray sets them
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
# a control actor whose application is gone ends after 20 s idle, not 300: the suite
# deploys and deletes dozens of applications on one Ray (raymlops/serving/control.py)
os.environ.setdefault("RAYMLOPS_CONTROL_IDLE_S", "20")


# -- two workers (the README's `pytest -n 2`): one Ray per worker -----------------------
# A test module is one unit of work, so that its module fixtures are built once; modules
# sharing an expensive session fixture are one unit. Units go out longest first (as
# measured in CI), then the unit tests one by one, which fill the end of both workers.
# (xdist's own --dist loadgroup cannot do this under pytest 9.2: it renames a test by
# assigning Node._nodeid, which pytest 9.2 no longer reads, so groups were split.)
_SHARED = {
    "serving": ("test_serving", "test_serving_http", "test_serving_live",
                "test_serving_separate", "test_serving_chaos", "test_cluster_jobs"),
    "demo": ("test_demo_flow", "test_serve_command"),
    "training": ("test_training", "test_worker_kill"),
}
_LONGEST_FIRST = ("serving", "test_tenancy", "training", "test_resume", "test_cli_runs",
                  "test_incremental", "demo", "test_team_setup", "test_retrain",
                  "test_second_table", "test_parity", "test_governance", "test_autoscaling")


#: how often the session Ray's workers report their metrics to its node agent
METRICS_REPORT_MS = 5000

def _unit(path: Path) -> str | None:
    """The unit of work of a test file: None for a unit test (each test is its own)."""
    if path.parent.name not in ("integration", "chaos"):
        return None
    return next((g for g, modules in _SHARED.items() if path.stem in modules), path.stem)


def pytest_configure(config: pytest.Config) -> None:
    """In the controlling process, before any worker starts a Ray: the token that token
    auth needs (~/.ray/auth_token). Each worker's first ray.init would otherwise write
    one of its own at the same moment, and a worker could end up with the other's."""
    if getattr(config, "workerinput", None) is None:
        from ray._private.authentication.authentication_token_setup import (
            ensure_token_if_auth_enabled,
        )

        ensure_token_if_auth_enabled()


@pytest.hookimpl(tryfirst=True, optionalhook=True)  # optional: no xdist, no scheduler
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """xdist's scope scheduler, with our units as scopes, in the workers' order."""
    if config.getvalue("dist") == "each":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByUnit(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _unit(Path(nodeid.split("::", 1)[0])) or nodeid

    config.option.loadscopereorder = False  # keep the longest-first order below
    return ByUnit(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if getattr(config, "workerinput", None) is None:
        return  # one process: the collection order (unit tests first)

    def rank(item: pytest.Item) -> int:
        unit = _unit(item.path)
        if unit is None:
            return len(_LONGEST_FIRST) + 1
        return _LONGEST_FIRST.index(unit) if unit in _LONGEST_FIRST else len(_LONGEST_FIRST)

    items.sort(key=rank)  # stable: a unit's tests keep their order


_GIVEN: set[int] = set()  # the ports free_port handed out in this process
#: ports between Ray's worker ports (10002-19999 by default, which every Ray on the
#: machine binds its workers on) and Linux's ephemeral range (32768-60999): a block of
#: 3,000 per process, by xdist worker (the controller 20000-22999, gw0 23000-25999, gw1
#: 26000-28999, gw2 29000-31999)
_FIRST, _BLOCK, _EPHEMERAL = 20000, 3000, 32768


def _block() -> range | None:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    index = int(worker[2:]) + 1 if worker[:2] == "gw" and worker[2:].isdigit() else 0
    start = _FIRST + _BLOCK * index
    return range(start, start + _BLOCK) if start + _BLOCK <= _EPHEMERAL else None


def free_port() -> int:
    """A port free now, that no other test process picks and that the kernel never
    hands out as an ephemeral port, and never one this process handed out before.

    Picked from the kernel one at a time, ports collided before anything bound them: CI
    saw `ray start --head` refuse a metrics port equal to another of its ports. A port
    from this process's own block cannot be picked by the other pytest worker, nor by a
    Ray choosing its own ports at random (those come from the ephemeral range)."""
    block = _block()
    candidates = (p for p in block if p not in _GIVEN) if block else iter(())
    for port in candidates:
        with socket.socket() as sock:
            try:
                sock.bind(("0.0.0.0", port))  # as Ray binds some of them
            except OSError:
                continue  # taken: by a service of the machine, or left by a test
        _GIVEN.add(port)
        return port
    for _ in range(1000):  # more workers than blocks: the kernel's, never twice
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port
    raise OSError("no free port that this process has not handed out already")


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
    # Metrics: a known export port, and the agent reporting every 5 s instead of 10, so
    # that the serving metrics test waits seconds for a count. Not every second: at 1 s
    # the dashboard agent alone took a fifth of a core for the whole session (measured:
    # 155 CPU-seconds in its first 783 s), about a tenth of the machine.
    # Its processes find its State API by RAY_API_SERVER_ADDRESS (pinned_state_api): the
    # other pytest worker's Ray and the tests' own heads run on the same machine.
    from raymlops._internal.ray_runtime import pinned_state_api, quiet_ray

    # A random port: two workers would both find 8265 free at the same moment.
    with pinned_state_api(free_port()) as dashboard_port:
        ray.init(num_cpus=4, include_dashboard=True, log_to_driver=False,
                 logging_level=logging.WARNING, _metrics_export_port=free_port(),
                 dashboard_port=dashboard_port,
                 _system_config={"metrics_report_interval_ms": METRICS_REPORT_MS})

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
