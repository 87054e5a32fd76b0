"""What `raymlops run` tells a person and a scheduler: features chosen, exit codes, run status."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from raymlops.cli import main
from raymlops.data.demo import write_demo_data
from raymlops.lineage.store import LineageStore
from tests.conftest import free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue() + err.getvalue()


def test_minimal_config_never_makes_the_email_id_a_feature_and_a_bad_param_is_permanent(
        ray_session, serve_port, tmp_path):
    """configs/minimal.yaml on the demo data made the e-mail id a categorical feature, so raw
    e-mails landed in features.json and MLflow; a bad parameter value was exit 75
    (retryable), so a scheduler would retry it forever."""
    workdir = tmp_path / "w"
    write_demo_data(workdir / "demo-data", rows=2000, production_rows=100)
    code, text = _run("run", str(ROOT / "configs" / "minimal.yaml"), "--workdir", str(workdir),
                      "--set", f"deploy.port={serve_port}", "--set", "train.params.max_depth=-3",
                      "--set", "train.failure.max_failures=0",
                      "--run-id", "bad-param-1")
    assert code == 10, text
    assert "TrainingError" in text and "train.params" in text
    store = LineageStore(f"sqlite:///{workdir / 'lineage.db'}")
    ingested = store.events(run_id="bad-param-1", kind="dataset_ingested")[0].payload
    assert "identifier" in ingested["excluded"]["email"]
    assert "email" not in ingested["profile"] or ingested["profile"]["email"]["kind"] == "excluded"
    features = json.loads((workdir / "runs" / "bad-param-1" / "features.json").read_text())
    assert "email" not in features["spec"]["categorical"]
    assert "@" not in json.dumps(features)
    with store.engine.connect() as conn:
        from sqlalchemy import text as sql

        status = conn.execute(sql("SELECT status FROM raymlops_runs WHERE run_id = :r"),
                              {"r": "bad-param-1"}).scalar()
    assert status == "failed"


def test_sigterm_mid_run_marks_the_run_interrupted_and_exits_143(tmp_path):
    """A scheduler stops a job with SIGTERM: the run must not stay 'running'."""
    workdir = tmp_path / "w"
    data = write_demo_data(workdir / "demo-data", rows=2000, production_rows=100)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"source": str(data["train"]), "target": "defaulted",
                 "task": "classification", "pii": {"email": "drop"}},
        "train": {"framework": "xgboost"}, "deploy": {"name": "sigterm", "port": free_port()}}))
    env = {**os.environ, "RAY_ADDRESS": ""}
    env.pop("RAY_ADDRESS")
    proc = subprocess.Popen([sys.executable, "-m", "raymlops.cli", "run", str(config),
                             "--workdir", str(workdir), "--run-id", "term-1"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    store_path = workdir / "lineage.db"
    deadline = time.monotonic() + 240
    started = False
    while time.monotonic() < deadline and proc.poll() is None:
        if store_path.exists():
            events = LineageStore(f"sqlite:///{store_path}").events(run_id="term-1")
            if any(e.kind == "dataset_ingested" for e in events):
                started = True
                break
        time.sleep(0.5)
    assert started, proc.communicate(timeout=60)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 143, stderr[-3000:]
    assert "terminated" in stderr
    with LineageStore(f"sqlite:///{store_path}").engine.connect() as conn:
        from sqlalchemy import text as sql

        status = conn.execute(sql("SELECT status FROM raymlops_runs WHERE run_id = 'term-1'")
                              ).scalar()
    assert status == "interrupted"


def test_sigterm_while_serving_flushes_the_capture_and_exits_143(tmp_path):
    """`--keep-serving` ended with ray.shutdown(): replicas died without writing the rows
    they had buffered, and the exit code was 0."""
    import pandas as pd
    import requests

    workdir = tmp_path / "w"
    data = write_demo_data(workdir / "demo-data", rows=1500, production_rows=100)
    config = tmp_path / "c.yaml"
    port = free_port()
    config.write_text(yaml.safe_dump({
        "data": {"source": str(data["train"]), "target": "defaulted",
                 "task": "classification", "pii": {"email": "drop"}},
        "train": {"framework": "xgboost", "params": {"num_boost_round": 5}},
        "deploy": {"name": "keep", "port": port, "capture_flush_s": 3600}}))
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen([sys.executable, "-m", "raymlops.cli", "run", str(config),
                             "--workdir", str(workdir), "--keep-serving"], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:  # the summary, then "serving ...; press Ctrl-C to stop"
        lines.append(line)
        if line.startswith("serving "):
            break
    assert lines and lines[-1].startswith("serving "), (lines, proc.stderr.read()[-3000:])
    rows = json.loads(pd.read_csv(data["production"]).drop(columns=["defaulted"]).head(7)
                      .to_json(orient="records"))
    for row in rows:
        answer = requests.post(f"http://127.0.0.1:{port}/keep/invocations", timeout=30,
                               json={"dataframe_records": [row]})
        assert answer.status_code == 200, answer.text
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 143, stderr[-3000:]
    files = list((workdir / "capture" / "keep").rglob("*.parquet"))
    assert sum(len(pd.read_parquet(f)) for f in files) == 7
