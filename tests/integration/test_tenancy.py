"""Two tenants on one Ray, one Serve, one MLflow registry and one lineage store: the
projects ``alpha`` and ``beta`` each run the pipeline for a model both call ``credit``.
Each sees, loads, promotes, serves and reads the lineage of its own only."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import requests
import yaml

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
PROJECTS = ("alpha", "beta")


def _config(tmp: Path, project: str, data: Path, port: int) -> Path:
    raw = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    raw.update(project=project, tenancy={})
    raw["data"]["source"] = str(data / "train.csv")
    raw["train"]["params"]["num_boost_round"] = 30
    raw["gates"] = {"min": {"roc_auc": 0.6}}
    raw["deploy"].update(name="credit", port=port)
    raw["monitor"]["replay"].update(source=str(data / "production.csv"), rows=40)
    path = tmp / f"{project}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _cli(*args: str) -> tuple[int, str]:
    from raymlops.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(args))
    return code, out.getvalue()


@pytest.fixture(scope="module")
def tenants(ray_session, serve_port, tmp_path_factory):
    from ray import serve

    from raymlops.data.demo import write_demo_data
    from raymlops.workspace import Workspace

    tmp = tmp_path_factory.mktemp("tenancy")
    ws = Workspace.at(tmp / "shared").ensure()  # one team's stores, shared by both
    write_demo_data(ws.demo_data_dir, rows=4000, production_rows=300)
    configs, summaries = {}, {}
    for project in PROJECTS:
        configs[project] = _config(tmp, project, ws.demo_data_dir, serve_port)
        code, out = _cli("run", str(configs[project]), "--workdir", str(ws.root), "--json")
        assert code == 0, out
        summaries[project] = json.loads(out)
    yield {"ws": ws, "configs": configs, "summaries": summaries, "port": serve_port}
    for project in PROJECTS:
        with contextlib.suppress(Exception):
            serve.delete(f"{project}.credit")


def test_each_project_serves_its_own_model_under_its_own_route(tenants):
    body = {"dataframe_records": [{"age": 40, "income": 52000, "loan_amount": 9000,
                                   "credit_score": 690, "debt_to_income": 0.3,
                                   "employment_years": 6, "open_accounts": 4,
                                   "home_ownership": "rent", "purpose": "car",
                                   "region": "north", "gender": "f",
                                   "email": "a@example.com"}]}
    base = f"http://127.0.0.1:{tenants['port']}"
    for project in PROJECTS:
        summary = tenants["summaries"][project]
        assert summary["model_name"] == f"{project}.credit"
        assert summary["endpoint"] == f"{base}/{project}/credit/invocations"
        answer = requests.post(summary["endpoint"], json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.headers["X-Model-Name"] == f"{project}.credit"
    # neither project holds the cluster's root routes, and no route is unprefixed
    assert requests.post(f"{base}/credit/invocations", json=body, timeout=30).status_code \
        == 404


def test_a_project_lists_only_its_own_models_and_deployments(tenants):
    workdir = str(tenants["ws"].root)
    code, out = _cli("models", "--project", "alpha", "--workdir", workdir, "--json")
    assert code == 0 and [m["model"] for m in json.loads(out)] == ["alpha.credit"]
    code, out = _cli("models", "--workdir", workdir, "--json")  # the platform's view
    assert code == 0 and {m["model"] for m in json.loads(out)} >= {"alpha.credit",
                                                                  "beta.credit"}
    code, out = _cli("status", "--project", "beta", "--workdir", workdir, "--json")
    assert code == 0 and {r["model"] for r in json.loads(out)} == {"beta.credit"}
    code, out = _cli("changes", "--project", "alpha", "--workdir", workdir, "--json")
    assert code == 0 and {c["model"] for c in json.loads(out)} == {"alpha.credit"}
    code, out = _cli("usage", "--project", "alpha", "--workdir", workdir, "--json")
    assert code == 0 and {r["project"] for r in json.loads(out)} == {"alpha"}


def test_a_project_cannot_load_promote_serve_or_read_the_lineage_of_anothers(tenants):
    workdir, alpha = str(tenants["ws"].root), str(tenants["configs"]["alpha"])
    holdout = str(tenants["ws"].demo_data_dir / "production.csv")
    refused = {
        "load": ["evaluate", "beta.credit", "--data", holdout, "--project", "alpha"],
        "serve": ["serve", "beta.credit", "--project", "alpha", "--port",
                  str(tenants["port"])],
        "promote": ["promote", "beta.credit", "1", "--to", "production", "--config", alpha],
        "approve": ["approve", "beta.credit", "1", "--env", "production", "--config", alpha],
        "rollback": ["rollback", "beta.credit", "--env", "production", "--config", alpha],
        "lineage": ["lineage", "beta.credit/1", "--project", "alpha"],
        "serving-at": ["serving-at", "beta.credit", "2026-12-01T00:00:00Z", "--project",
                       "alpha"],
        "export": ["export-serve", "beta.credit", "--project", "alpha"],
        "another config": ["promote", "credit", "1", "--to", "production", "--config", alpha,
                           "--project", "beta"],
    }
    for what, command in refused.items():
        code, _ = _cli(*command, "--workdir", workdir)
        assert code == 7, what
    # serving its own model cannot take another project's application or the root routes
    port = str(tenants["port"])
    for change in (["--name", "beta.credit"], ["--set", "deploy.standard_paths=always"],
                   ["--set", "deploy.route_prefix=/beta/credit"]):
        code, _ = _cli("serve", "credit", "--project", "alpha", "--port", port, *change,
                       "--workdir", workdir)
        assert code == 2, change  # a config error naming the key, before anything runs
    # its own: the same commands by the short name work
    code, out = _cli("lineage", "credit/1", "--project", "alpha", "--workdir", workdir,
                     "--json")
    assert code == 0 and json.loads(out)["model"] == "alpha.credit"
    code, out = _cli("evaluate", "credit", "--data", holdout, "--project", "beta",
                     "--workdir", workdir, "--json")
    assert code == 0, out
    # alpha's own export holds its application only, and says that applying it as is
    # (serve deploy replaces the cluster's whole Serve state) would delete the others,
    # without naming another project's
    code, out = _cli("export-serve", "credit", "--project", "alpha", "--workdir", workdir)
    assert code == 0 and out.startswith("# raymlops export-serve: this file leaves out"), out
    assert "other projects' applications" in out.splitlines()[0]
    assert "beta" not in out and "name: alpha.credit" in out
    # beta's model still serves beta's version, untouched by alpha's attempts
    code, out = _cli("status", "--project", "beta", "--workdir", workdir, "--json")
    [row] = json.loads(out)
    assert row["model"] == "beta.credit" and row["live"]


@pytest.mark.postgres
def test_with_mlflow_workspaces_the_server_scopes_each_projects_registry(
        ray_session, serve_port, tmp_path, monkeypatch):
    """``tenancy.mlflow_workspace``: the project's runs, models and artifacts live in its
    workspace on a server started with ``--enable-workspaces``; the server itself hides
    them from another workspace, whatever the client asks for."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from ray import serve

    from raymlops.data.demo import write_demo_data
    from raymlops.workspace import Workspace
    from tests.mlflow_server import mlflow_server

    monkeypatch.delenv("MLFLOW_WORKSPACE", raising=False)  # set_workspace writes it
    ws = Workspace.at(tmp_path / "ws").ensure()
    write_demo_data(ws.demo_data_dir, rows=4000, production_rows=300)
    with mlflow_server(tmp_path, prefix="raymlops_ws", workspaces=True) as server:
        configs = {}
        for project in PROJECTS:
            path = _config(tmp_path, project, ws.demo_data_dir, serve_port)
            raw = yaml.safe_load(path.read_text())
            raw["tenancy"] = {"mlflow_workspace": True}
            raw["tracking"] = {"uri": server.tracking_uri}
            raw["deploy"]["name"] = "scored"
            path.write_text(yaml.safe_dump(raw))
            configs[project] = path
        try:
            code, out = _cli("run", str(configs["alpha"]), "--workdir", str(ws.root),
                             "--json")
            assert code == 0, out
            summary = json.loads(out)
            assert summary["model_name"] == "alpha.scored"
            # the replicas loaded the model from alpha's workspace: it answers
            answer = requests.post(summary["endpoint"], timeout=30, json={
                "dataframe_records": [{"age": 40, "income": 52000, "loan_amount": 9000,
                                       "credit_score": 690, "debt_to_income": 0.3,
                                       "employment_years": 6, "open_accounts": 4,
                                       "home_ownership": "rent", "purpose": "car",
                                       "region": "north", "gender": "f"}]})
            assert answer.status_code == 200, answer.text
            client = MlflowClient(tracking_uri=server.tracking_uri)
            mlflow.set_workspace("alpha")
            version = client.get_model_version("alpha.scored", summary["model_version"])
            run = client.get_run(version.run_id)
            assert "/workspaces/alpha/" in run.info.artifact_uri
            assert client.get_experiment(run.info.experiment_id).name == "alpha"
            # beta's workspace: the server itself hides alpha's model, run and experiment
            code, out = _cli("models", "--config", str(configs["beta"]), "--workdir",
                             str(ws.root), "--json")
            assert code == 0 and json.loads(out) == []
            mlflow.set_workspace("beta")
            with pytest.raises(MlflowException, match="not found"):
                client.get_registered_model("alpha.scored")
            with pytest.raises(MlflowException, match="not found"):
                client.get_run(version.run_id)
            assert client.get_experiment_by_name("alpha") is None
            assert client.search_registered_models() == []
        finally:
            mlflow.set_workspace(None)
            with contextlib.suppress(Exception):
                serve.delete("alpha.scored")
