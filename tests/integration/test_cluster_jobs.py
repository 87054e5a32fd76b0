"""From laptop to cluster, on a real second Ray: a head started with ``ray start --head``
(dashboard on loopback, token auth), driven only through its dashboard, as a user drives
a cluster: ``serve deploy`` of an exported serving config, and ``ray job submit`` (the
Jobs API, ``JobSubmissionClient``) of the pipeline and of a job that fails for good.

The module's tests run in file order on one head: first the export, re-applied to that
head's fresh Serve, then the pipeline job, whose Serve application joins it.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from tests.conftest import free_port
from tests.ray_head import Head, follow, ray_head, runtime_env

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
EXPORTED = "exported"


@pytest.fixture(scope="module")
def head():
    with ray_head(num_cpus=3) as started:
        yield started


@pytest.fixture(scope="module")
def head_serve_port() -> int:
    return free_port()  # one Serve per cluster: every application on the head uses it


@pytest.fixture(scope="module")
def client(head):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(head.dashboard)


def _serve_cli(head: Head, *args: str) -> str:
    serve = str(Path(sys.executable).parent / "serve")
    done = subprocess.run([serve, *args, "--address", head.dashboard], env=head.env, check=False,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


def test_exported_serving_state_reapplies_on_a_fresh_cluster(head, head_serve_port,
                                                             serving_models, serve_port,
                                                             tmp_path):
    import ray
    from ray import serve

    from raymlops.cli import main
    from raymlops.config import DeployConfig
    from raymlops.serving.deploy import current_routing, deploy
    from tests.kuberay_schema import check as _check

    ws = serving_models["ws"]
    config = DeployConfig(name=EXPORTED, port=serve_port, standard_paths="never",
                          batching={"max_batch_size": 8, "batch_wait_timeout_s": 0.004})
    deploy(config, versions=serving_models["uris"], weights={"1": 30, "2": 70},
           tracking_uri=ws.mlflow_uri, capture_root=None)
    try:
        live = current_routing(EXPORTED)
        out = tmp_path / "serve.yaml"
        rayservice = tmp_path / "rayservice.yaml"
        with contextlib.redirect_stdout(io.StringIO()):
            code = main(["export-serve", EXPORTED, "--address",
                         ray.get_runtime_context().gcs_address, "-o", str(out),
                         "--port", str(head_serve_port), "--rayservice", str(rayservice),
                         "--cluster", str(ROOT / "cluster" / "kuberay" / "raycluster.yaml")])
        assert code == 0
    finally:
        serve.delete(EXPORTED)
    exported = yaml.safe_load(out.read_text())
    [app] = exported["applications"]
    assert app["args"]["settings"]["batching"] == {"max_batch_size": 8,
                                                   "batch_wait_timeout_s": 0.004}
    assert app["deployments"][0]["user_config"]["routing"]["weights"] == live.weights
    # the RayService carries the same applications, and passes KubeRay's CRD schema
    manifest = yaml.safe_load(rayservice.read_text())
    _check(manifest, "RayService")
    assert yaml.safe_load(manifest["spec"]["serveConfigV2"])["applications"] == [app]

    _serve_cli(head, "deploy", str(out))  # `serve deploy`, as a GitOps controller runs it
    url = f"http://127.0.0.1:{head_serve_port}/{EXPORTED}"
    deadline = time.monotonic() + 240
    health = None
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            answer = requests.get(f"{url}/health", timeout=5)
            if answer.ok:
                health = answer.json()
                break
        time.sleep(1)
    assert health is not None, _serve_cli(head, "status")
    assert health["weights"] == live.weights and health["shadows"] == dict(live.shadows)
    body = {"dataframe_records": json.loads(
        serving_models["rows"].head(1).to_json(orient="records"))}
    seen = [requests.post(f"{url}/invocations", json=body, timeout=30).headers.get(
        "X-Model-Version") for _ in range(60)]
    assert set(seen) == {"1", "2"} and seen.count("2") > seen.count("1")
    status = yaml.safe_load(_serve_cli(head, "status"))
    [applied] = [a for a in status["applications"] if a == EXPORTED]
    assert status["applications"][applied]["status"] == "RUNNING"


def test_pipeline_job_runs_registers_and_serves(head, client, head_serve_port,
                                                tmp_path_factory):
    from mlflow import MlflowClient
    from ray.job_submission import JobStatus

    from raymlops.data.demo import write_demo_data
    from raymlops.workspace import Workspace

    ws = Workspace.at(tmp_path_factory.mktemp("job-workdir")).ensure()
    write_demo_data(ws.demo_data_dir, rows=6000, production_rows=1000)
    job = client.submit_job(
        entrypoint=(f"python jobs/pipeline.py configs/demo.yaml --workdir {ws.root} "
                    f"--set deploy.port={head_serve_port} --set monitor.replay.rows=100"),
        runtime_env=runtime_env(), entrypoint_num_cpus=0)
    logs = follow(client, job, timeout_s=1200)
    info = client.get_job_info(job)
    assert info.status == JobStatus.SUCCEEDED, logs[-4000:]
    assert info.driver_exit_code == 0
    [summary_path] = list(ws.runs_dir.glob("*/summary.json"))
    summary = json.loads(summary_path.read_text())
    assert summary["status"] == "succeeded" and summary["run_id"] in logs
    version = MlflowClient(tracking_uri=ws.mlflow_uri).get_model_version(
        "demo-lending", summary["model_version"])
    assert version.status == "READY"
    import pandas as pd

    rows = pd.read_csv(ws.demo_data_dir / "production.csv").drop(columns=["defaulted"])
    answer = requests.post(summary["endpoint"], timeout=30, json={
        "dataframe_records": json.loads(rows.head(3).to_json(orient="records"))})
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["predictions"]) == 3
    assert answer.headers["X-Model-Version"] == summary["model_version"]


def test_a_permanent_failure_exits_with_its_own_code(head, client):
    from ray.job_submission import JobStatus

    from raymlops.errors import RETRYABLE_EXIT_CODE, ConfigError

    job = client.submit_job(entrypoint="python jobs/train.py configs/no-such-config.yaml",
                            runtime_env=runtime_env(), entrypoint_num_cpus=0)
    logs = follow(client, job, timeout_s=300)
    info = client.get_job_info(job)
    assert info.status == JobStatus.FAILED
    assert info.driver_exit_code == ConfigError.exit_code != RETRYABLE_EXIT_CODE
    assert "no-such-config.yaml" in logs  # the one-line reason names what to fix
