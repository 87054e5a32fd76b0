"""Environments, approvals, champion-relative gates, change records and the audit trail,
on a real pipeline (Ray, MLflow, Serve) with staging and production side by side."""

from __future__ import annotations

import contextlib
import io
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import mlflow
import pytest
import requests
import yaml

from raymlops import Pipeline, load_config
from raymlops.cli import main
from raymlops.data.demo import write_demo_data
from raymlops.errors import GateRejectedError, NotFoundError, PermissionDeniedError
from raymlops.pipeline import promotion
from raymlops.workspace import Workspace

pytestmark = pytest.mark.integration
NAME = "gov-model"


def _raw(data: dict, port: int, **train) -> dict:
    return {
        "project": "governance",
        "data": {"source": str(data["train"]), "target": "defaulted", "task": "classification",
                 "id_column": "email", "pii": {"email": "hash"}, "sensitive": ["gender"]},
        "train": {"framework": "xgboost", "params": {"num_boost_round": 40, "max_depth": 4,
                                                     **train}},
        "gates": {"min": {"roc_auc": 0.55},
                  "fairness": {"gender": {"demographic_parity_difference": {"max": 0.5}}}},
        "environments": [
            {"name": "staging"},
            {"name": "production",
             "gates": {"champion": {"roc_auc": {"min_absolute_change": 0.0}}},
             "approvals": {"required": 1, "role": "approver", "author_may_approve": False}}],
        "governance": {"roles": {"approver": ["bob", "alice"]}},
        "deploy": {"name": NAME, "port": port},
    }


def _cli(*args: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue() + err.getvalue()


@pytest.fixture(scope="module")
def governed(ray_session, serve_port, tmp_path_factory):
    root = tmp_path_factory.mktemp("governance")
    data = write_demo_data(root / "demo-data", rows=3000, production_rows=100)
    raw = _raw(data, serve_port)
    config_path = root / "c.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    workdir = root / "w"
    first = Pipeline(load_config(raw), workdir=workdir, actor="alice").run()
    mlflow.set_tracking_uri(Workspace.at(workdir).mlflow_uri)
    yield {"root": root, "raw": raw, "config": str(config_path), "workdir": workdir,
           "first": first, "data": data}
    from ray import serve

    for app in (NAME, f"{NAME}-staging"):
        with contextlib.suppress(Exception):
            serve.delete(app)


def test_a_run_serves_in_the_first_environment_through_a_change_record(governed):
    first = governed["first"]
    assert first.status == "succeeded" and first.model_version == "1"
    assert f"/{NAME}-staging/" in first.endpoint
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias(NAME, "staging").version) == "1"
    tags = client.get_model_version(NAME, "1").tags
    assert tags["raymlops.gate"] == "passed" and tags["raymlops.author"] == "alice"
    assert tags["raymlops.change"] == "CHG-000001" and ":" in tags["raymlops.audit_head"]
    code, text = _cli("changes", NAME, "--workdir", str(governed["workdir"]), "--json")
    assert code == 0
    [change] = json.loads(text)
    assert change["kind"] == "deployment" and change["state"] == "implemented"
    assert [h["state"] for h in change["history"]] == ["requested", "approved", "implemented"]
    card = first.reports["model_card"]
    html = Path(card).read_text()
    assert html.count("<svg") >= 4 and "Fairness per group" in html
    assert "<script" not in html and "http://" not in html and "https://" not in html


def test_promotion_needs_an_approval_and_the_author_may_not_give_it(governed):
    args = ["--workdir", str(governed["workdir"]), "--config", governed["config"]]
    code, text = _cli("promote", NAME, "1", "--to", "production", *args, "--as", "carol")
    assert code == 7 and "needs 1 approval" in text
    code, text = _cli("approve", NAME, "1", "--env", "production", *args, "--as", "alice")
    assert code == 7 and "separation of duties" in text
    code, text = _cli("approve", NAME, "1", "--env", "production", *args, "--as", "mallory")
    assert code == 7 and "role 'approver'" in text
    code, text = _cli("approve", NAME, "1", "--env", "production", *args, "--as", "bob")
    assert code == 0, text
    code, text = _cli("promote", NAME, "1", "--to", "production", *args, "--as", "carol")
    assert code == 0, text
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias(NAME, "production").version) == "1"
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "1"
    # staging and production serve side by side
    for route in (NAME, f"{NAME}-staging"):
        health = requests.get(f"http://127.0.0.1:{governed['raw']['deploy']['port']}/"
                              f"{route}/health", timeout=10)
        assert health.status_code == 200
    services = promotion.Services.open(load_config(governed["raw"]),
                                       Workspace.at(governed["workdir"]))
    actions = [e.action for e in services.audit.entries()]
    assert actions.count("approval_refused") == 2 and "promotion_refused" in actions
    assert "change_implemented" in actions and "alias_set" in actions


def test_serving_at_names_the_version_its_data_code_gates_and_approvers(governed):
    now = datetime.now(UTC).isoformat()
    code, text = _cli("serving-at", NAME, now, "--env", "production", "--workdir",
                      str(governed["workdir"]), "--json")
    assert code == 0, text
    [production] = json.loads(text)["environments"]
    [served] = production["versions"]
    assert production["env"] == "production" and production["change"].startswith("CHG-")
    assert served["version"] == "1" and served["share"] == 100.0
    assert served["approvers"] == ["bob"] and served["gate"]["passed"] is True
    assert served["gate"]["env"] == "production"  # the verdict of production's own gates
    assert served["dataset_digest"].startswith("sha256:") and served["commit"]
    assert served["author"] == "alice" and served["config_hash"].startswith("sha256:")
    # without --env: every environment; an instant given with an offset is that instant
    offset = datetime.now(UTC).astimezone(timezone(timedelta(hours=-5))).isoformat()
    code, text = _cli("serving-at", NAME, offset, "--workdir", str(governed["workdir"]),
                      "--json")
    assert code == 0, text
    by_env = {e["env"]: e for e in json.loads(text)["environments"]}
    assert set(by_env) == {"staging", "production"}
    assert by_env["staging"]["versions"][0]["approvers"] == []
    promoted = datetime.fromisoformat(production["since"]).replace(tzinfo=UTC)
    before = (promoted - timedelta(seconds=1)).astimezone(timezone(timedelta(hours=2)))
    code, text = _cli("serving-at", NAME, before.isoformat(), "--env", "production",
                      "--workdir", str(governed["workdir"]))
    assert code == 9 and "nothing" in text  # +02:00 read as UTC would be 2 hours later
    code, text = _cli("serving-at", NAME, "2000-01-01T00:00:00Z", "--workdir",
                      str(governed["workdir"]))
    assert code == 9 and "nothing" in text


def test_a_promotion_change_record_names_its_approvers_and_verdict(governed):
    code, text = _cli("changes", NAME, "--workdir", str(governed["workdir"]), "--json")
    assert code == 0, text
    [done] = [c for c in json.loads(text) if c["kind"] == "promotion"
              and c["state"] == "implemented"]
    assert done["env"] == "production" and done["approvers"] == ["bob"]
    assert done["verdict"]["passed"] is True and done["verdict"]["env"] == "production"
    assert done["from_version"] is None and done["rollback_plan"]["rollback_to"] is None
    assert [h["state"] for h in done["history"]] == ["requested", "approved", "implemented"]


def test_promotion_refuses_a_skipped_environment_and_a_failing_target_gate(governed):
    """A version that never ran in staging cannot enter production; and production's own
    gates, judged at promotion on the holdout rows, refuse a version that fails them."""
    client = mlflow.MlflowClient()
    first = client.get_model_version(NAME, "1")
    skipper = client.create_model_version(NAME, source=first.source, run_id=first.run_id)
    client.set_model_version_tag(NAME, skipper.version, "raymlops.gate", "passed")
    args = ["--workdir", str(governed["workdir"]), "--config", governed["config"]]
    code, text = _cli("promote", NAME, str(skipper.version), "--to", "production", *args,
                      "--as", "carol")
    assert code == 7 and "never ran in staging" in text, text

    strict = dict(governed["raw"])
    strict["environments"] = [governed["raw"]["environments"][0], {
        **governed["raw"]["environments"][1], "gates": {"min": {"roc_auc": 0.999}}}]
    strict_path = Path(governed["root"]) / "strict.yaml"
    strict_path.write_text(yaml.safe_dump(strict))
    code, text = _cli("promote", NAME, "1", "--to", "production", "--workdir",
                      str(governed["workdir"]), "--config", str(strict_path), "--as", "carol")
    assert code == 4 and "a gate of production fails" in text and "0.999" in text, text
    services = promotion.Services.open(load_config(governed["raw"]),
                                       Workspace.at(governed["workdir"]))
    refusals = [e.reason for e in services.audit.entries(action="promotion_refused")]
    assert any("never ran in staging" in r for r in refusals)
    assert any("a gate of production fails" in r for r in refusals)


def test_a_candidate_worse_than_the_champion_is_rejected_recorded_and_never_served(governed):
    worse = _raw(governed["data"], governed["raw"]["deploy"]["port"], num_boost_round=2,
                 max_depth=1)
    worse["gates"]["champion"] = {"roc_auc": {"min_absolute_change": 0.0}}
    client = mlflow.MlflowClient()
    newest = max(int(v.version) for v in client.search_model_versions(f"name='{NAME}'"))
    with pytest.raises(GateRejectedError) as err:
        Pipeline(load_config(worse), workdir=governed["workdir"], actor="alice").run()
    message = str(err.value)
    champion_auc = client.get_run(client.get_model_version(
        NAME, "1").run_id).data.metrics["test_roc_auc"]
    rejected = str(newest + 1)
    assert f"version {rejected} is rejected" in message and f"{champion_auc:.4f}" in message
    assert "(version 1)" in message
    tags = client.get_model_version(NAME, rejected).tags
    assert tags["raymlops.gate"] == "rejected"
    assert "champion's" in tags["raymlops.gate_reasons"]
    assert str(client.get_model_version_by_alias(NAME, "staging").version) == "1"
    assert "staging" not in client.get_model_version(NAME, rejected).aliases
    services = promotion.Services.open(load_config(governed["raw"]),
                                       Workspace.at(governed["workdir"]))
    with pytest.raises((GateRejectedError, PermissionDeniedError)):
        promotion.promote(services, NAME, rejected, "staging", actor="carol",
                          tracking_uri=mlflow.get_tracking_uri(), deploy=False)


def test_a_rollback_is_a_change_record_and_returns_the_alias(governed):
    """A version implemented in staging (the product's implement step, without Serve),
    then rolled back: the record of the rolled-back change, the rollback's own record,
    the alias back on the earlier version, and both in the audit trail."""
    config = load_config(governed["raw"])
    services = promotion.Services.open(config, Workspace.at(governed["workdir"]))
    client = mlflow.MlflowClient()
    first = client.get_model_version(NAME, "1")
    extra = str(client.create_model_version(NAME, source=first.source,
                                            run_id=first.run_id).version)
    _, staging = promotion.environment(config, "staging")
    change = services.gov.open_change(model=NAME, version=extra, env="staging",
                                      kind="promotion", from_version="1", requester="carol",
                                      approvers=[], verdict={"passed": True},
                                      rollback_to="1", reason="test")
    promotion.implement(services, change, NAME, extra, staging, actor="carol",
                        tracking_uri=mlflow.get_tracking_uri(), deploy=False, approvers=[])
    assert str(client.get_model_version_by_alias(NAME, "staging").version) == extra
    back = promotion.rollback(services, NAME, "staging", actor="dana",
                              tracking_uri=mlflow.get_tracking_uri(), deploy=False)
    assert (back.kind, back.to_version, back.from_version, back.state) == (
        "rollback", "1", extra, "implemented")
    assert str(client.get_model_version_by_alias(NAME, "staging").version) == "1"
    assert services.gov.change(change.id).state == "rolled_back"
    actions = [e.action for e in services.audit.entries(obj_prefix=f"model:{NAME}")]
    assert "change_rolled_back" in actions and "rollback_requested" in actions
    # a second rollback does not undo the first: staging's first version replaced nothing
    with pytest.raises(NotFoundError):
        promotion.rollback(services, NAME, "staging", actor="dana",
                           tracking_uri=mlflow.get_tracking_uri(), deploy=False)


def test_the_audit_trail_verifies_and_the_history_exports(governed):
    workdir = str(governed["workdir"])
    code, text = _cli("audit", "verify", "--workdir", workdir, "--json")
    assert code == 0, text
    assert json.loads(text)["ok"] is True and json.loads(text)["entries"] > 20
    code, mermaid = _cli("lineage", f"{NAME}/1", "--workdir", workdir, "--format", "mermaid")
    assert code == 0 and mermaid.startswith("flowchart LR") and "approved for production by bob" \
        in mermaid and "CHG_000002" in mermaid
    code, dot = _cli("lineage", f"{NAME}/1", "--workdir", workdir, "--format", "dot")
    assert code == 0 and dot.startswith("digraph lineage") and "->" in dot
    code, events = _cli("lineage", f"{NAME}/1", "--workdir", workdir, "--format",
                        "openlineage")
    assert code == 0
    parsed = [json.loads(line) for line in events.splitlines() if line.startswith("{")]
    assert parsed and all(e["eventType"] == "COMPLETE" and e["job"]["namespace"] == "raymlops"
                          for e in parsed)
    assert parsed[0]["inputs"][0]["facets"]["version"]["datasetVersion"].startswith("sha256:")
    assert len({e["run"]["runId"] for e in parsed}) == len(parsed)  # one run per step
    assert all(datetime.fromisoformat(e["eventTime"]).tzinfo is not None for e in parsed)
    jobs = {e["job"]["name"] for e in parsed}
    assert f"{NAME}.approve.production" in jobs and f"{NAME}.promotion.production" in jobs
    # an edit is caught, naming the entry
    services = promotion.Services.open(load_config(governed["raw"]), Workspace.at(workdir))
    from sqlalchemy import text as sql

    with services.audit.engine.begin() as conn:
        conn.execute(sql("UPDATE raymlops_audit SET actor = 'nobody' WHERE seq = 5"))
    code, text = _cli("audit", "verify", "--workdir", workdir)
    assert code == 6 and "entry 5" in text
