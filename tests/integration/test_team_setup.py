"""The team setup for real: configs/team.yaml pointed at a real ``mlflow server`` (its
backend store on the local PostgreSQL, artifacts proxied by the server) and at lineage
and audit on PostgreSQL. The pipeline runs through it; then a second workdir (another
machine: nothing of the first on its disk) serves the registered version from it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from tests.mlflow_server import mlflow_server
from tests.postgres import postgres_schema

pytestmark = [pytest.mark.integration, pytest.mark.postgres]
ROOT = Path(__file__).resolve().parents[2]
MODEL = "team-lending"


def _team_config(tmp_path: Path, *, tracking: str, lineage: str, data: Path,
                 port: int) -> Path:
    raw = yaml.safe_load((ROOT / "configs" / "team.yaml").read_text())
    raw["tracking"]["uri"], raw["lineage"]["url"] = tracking, lineage
    raw["data"]["source"] = str(data / "train.csv")
    raw["monitor"]["replay"].update(source=str(data / "production.csv"), rows=100)
    raw["deploy"].update(name=MODEL, port=port)
    path = tmp_path / "team.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_pipeline_and_serving_through_a_tracking_server_and_postgres(
        ray_session, serve_port, tmp_path):
    import contextlib
    import io

    import pandas as pd
    from mlflow import MlflowClient
    from ray import serve

    from raymlops.cli import main
    from raymlops.data.demo import write_demo_data
    from raymlops.lineage.audit import AuditTrail
    from raymlops.lineage.store import LineageStore
    from raymlops.workspace import Workspace

    with mlflow_server(tmp_path, prefix="raymlops_team") as server, \
            postgres_schema("raymlops_team") as lineage_url:
        laptop = Workspace.at(tmp_path / "laptop").ensure()
        write_demo_data(laptop.demo_data_dir, rows=6000, production_rows=1000)
        config = _team_config(tmp_path, tracking=server.tracking_uri, lineage=lineage_url,
                              data=laptop.demo_data_dir, port=serve_port)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(["run", str(config), "--workdir", str(laptop.root), "--json"])
        assert code == 0, out.getvalue()[-3000:]
        summary = json.loads(out.getvalue())
        serve.delete(MODEL)
        version = summary["model_version"]

        # the registry, the runs and the artifacts are the server's: proxied, not on disk
        client = MlflowClient(tracking_uri=server.tracking_uri)
        registered = client.get_model_version(MODEL, version)
        run = client.get_run(registered.run_id)
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")
        assert client.get_experiment(run.info.experiment_id).name == "lending"
        assert list(server.artifacts.rglob("MLmodel"))
        assert not (laptop.root / "mlflow.db").exists()
        assert not list((laptop.root / "mlartifacts").rglob("MLmodel"))
        # lineage and the audit trail are PostgreSQL's, one unbroken chain
        kinds = {e.kind for e in LineageStore(lineage_url).events(model_name=MODEL)}
        assert {"model_registered", "model_deployed"} <= kinds
        assert not (laptop.root / "lineage.db").exists()
        trail = AuditTrail(lineage_url)
        assert trail.verify().ok and list(trail.entries(obj_prefix=f"model:{MODEL}"))

        # what the run held, per stage, from Ray's State API: in the summary, MLflow and
        # lineage, and summed by `raymlops usage` for the team's project
        usage = summary["usage"]
        train_cpu = usage["stages"]["train"]["cpu_seconds"]
        # held, so never more than the session's 4 CPUs for the stage's length
        assert 0 < train_cpu <= 4 * usage["stages"]["train"]["wall_seconds"]
        assert usage["total"]["cpu_seconds"] >= train_cpu > 0
        assert usage["total"]["gpu_seconds"] == 0 and usage["total"]["peak_memory_bytes"] > 0
        assert "unmeasured" not in usage["stages"]["train"]
        assert run.data.metrics["usage/cpu_seconds"] == usage["total"]["cpu_seconds"]
        prices = tmp_path / "prices.yaml"
        prices.write_text("cpu_hour: 3600\ngpu_hour: 0\ncurrency: EUR\n")
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(["usage", "--config", str(config), "--project", "lending-team",
                         "--prices", str(prices), "--json"]) == 0
        [row] = json.loads(out.getvalue())
        assert row["model"] == MODEL and row["runs"] == 1
        assert row["cost"] == pytest.approx(usage["total"]["cpu_seconds"], rel=1e-3)

        # another machine: an empty workdir, the same team config, the registered version
        other = tmp_path / "other-machine"
        import ray

        env = {**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "token")}
        process = subprocess.Popen(
            [sys.executable, "-m", "raymlops.cli", "serve", f"{MODEL}/{version}",
             "--config", str(config), "--workdir", str(other), "--name", "team-served",
             "--address", ray.get_runtime_context().gcs_address, "--port", str(serve_port),
             "--json", "--as", "tester"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
        try:
            text = ""
            while process.stdout is not None:
                line = process.stdout.readline()
                text += line
                if not line or line.startswith("}"):
                    break
            assert text.strip(), process.stderr.read() if process.stderr else ""
            started = json.loads(text)
            rows = pd.read_csv(laptop.demo_data_dir / "production.csv").drop(
                columns=["defaulted"])
            answer = requests.post(started["endpoint"], timeout=30, json={
                "dataframe_records": json.loads(rows.head(2).to_json(orient="records"))})
            assert answer.status_code == 200, answer.text
            assert answer.headers["X-Model-Version"] == version
        finally:
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=120) == 130
        assert not (other / "mlflow.db").exists()
        served = [e for e in LineageStore(lineage_url).events(model_name=MODEL)
                  if e.stage == "serve"]
        assert [e.kind for e in served][-2:] == ["model_deployed", "serving_stopped"]
