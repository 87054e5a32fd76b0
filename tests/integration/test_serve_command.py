"""``raymlops serve`` as a user runs it: a subprocess that joins the session's Ray, serves
a registered version until interrupted, and records both ends in lineage and audit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import requests
from ray import serve

pytestmark = pytest.mark.integration
APP = "served-by-cli"
SENTINEL = "not-served-by-cli"


def test_serve_runs_until_interrupted(demo_run, serve_port):
    import pandas as pd
    import ray

    from raymlops.lineage.store import LineageStore
    from raymlops.workspace import Workspace

    ws = Workspace.at(demo_run["workdir"])
    # an application this session deploys itself (the demo's is deleted by its own module)
    serve.run(_Sentinel.bind(), name=SENTINEL, route_prefix=f"/{SENTINEL}")
    before = set(serve.status().applications)
    assert SENTINEL in before
    env = {**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "token")}
    process = subprocess.Popen(
        [sys.executable, "-m", "raymlops.cli", "serve", "demo-lending/1", "--name", APP,
         "--workdir", str(ws.root), "--address", ray.get_runtime_context().gcs_address,
         "--port", str(serve_port), "--json", "--as", "tester"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        line = process.stdout.readline() if process.stdout else ""
        output = line
        while line and not line.startswith("}"):
            line = process.stdout.readline() if process.stdout else ""
            output += line
        assert output.strip(), process.stderr.read() if process.stderr else ""
        started = json.loads(output)
        assert started["app"] == APP and started["model_uris"] == {
            "1": "models:/demo-lending/1"}
        rows = pd.read_csv(ws.demo_data_dir / "production.csv").drop(columns=["defaulted"])
        record = json.loads(rows.head(1).to_json(orient="records"))
        answer = requests.post(started["endpoint"], json={"dataframe_records": record},
                               timeout=30)
        assert answer.status_code == 200 and answer.headers["X-Model-Version"] == "1"
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=120)
    assert code == 130

    def gone() -> bool:  # over HTTP: this process's Serve client may be stale by now
        try:
            return requests.get(started["endpoint"].rsplit("/", 1)[0] + "/health",
                                timeout=5).status_code != 200
        except requests.RequestException:
            return True

    deadline = time.monotonic() + 30
    while not gone() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert gone()  # it took its application down
    # ... and only its own: it joined this session's Ray, so stopping must leave that
    # Ray's Serve (and every other driver's application on it) running. A serve.shutdown
    # on a joined cluster once killed the session's Serve controller here.
    status = serve.status()
    assert set(status.applications) == before
    assert all(app.status == "RUNNING" for app in status.applications.values())
    kinds = [e.kind for e in LineageStore(ws.lineage_url).events(model_name="demo-lending")
             if e.stage == "serve"]
    assert kinds[-2:] == ["model_deployed", "serving_stopped"]
    serve.delete(SENTINEL)


@serve.deployment(ray_actor_options={"num_cpus": 0.05})
class _Sentinel:
    def __call__(self, request: object) -> str:
        return "still here"
