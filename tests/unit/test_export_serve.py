"""``export-serve``'s manifests, without a cluster: a RayService around a Serve config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from raymlops.errors import ConfigError
from raymlops.serving.export import rayservice
from tests.kuberay_schema import check

ROOT = Path(__file__).resolve().parents[2]
CONFIG = {"proxy_location": "EveryNode", "http_options": {"host": "127.0.0.1", "port": 8123},
          "applications": [{"name": "m", "route_prefix": "/m",
                            "import_path": "raymlops.serving.app:build_app", "args": {},
                            "deployments": [{"name": "m", "user_config": {"routing": {
                                "weights": {"1": 30.0, "2": 70.0}}}}]}]}


def test_a_new_rayservice_wraps_a_rayclusters_spec():
    manifest = rayservice(CONFIG, name="m", cluster=ROOT / "cluster/kuberay/raycluster.yaml")
    check(manifest, "RayService")
    serve_config = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    assert serve_config["applications"] == CONFIG["applications"]
    # a pod's Serve answers KubeRay's serve Service on 8000, on every interface
    assert serve_config["http_options"] == {"host": "0.0.0.0", "port": 8000}


def test_an_existing_rayservice_keeps_everything_but_its_serve_config(tmp_path):
    existing = tmp_path / "rayservice.yaml"
    first = rayservice(CONFIG, name="m", cluster=ROOT / "cluster/kuberay/raycluster.yaml")
    first["metadata"]["labels"] = {"team": "lending"}
    first["spec"]["serviceUnhealthySecondThreshold"] = 900
    existing.write_text(yaml.safe_dump(first))
    changed = {**CONFIG, "applications": [{**CONFIG["applications"][0], "route_prefix": "/"}]}
    manifest = rayservice(changed, name="m", existing=existing)
    assert manifest["metadata"]["labels"] == {"team": "lending"}
    assert manifest["spec"]["serviceUnhealthySecondThreshold"] == 900
    assert yaml.safe_load(manifest["spec"]["serveConfigV2"])["applications"][0][
        "route_prefix"] == "/"


def test_a_new_rayservice_needs_a_cluster_and_a_real_manifest(tmp_path):
    with pytest.raises(ConfigError, match="--cluster"):
        rayservice(CONFIG, name="m", existing=tmp_path / "absent.yaml")
    wrong = tmp_path / "job.yaml"
    wrong.write_text(yaml.safe_dump({"apiVersion": "ray.io/v1", "kind": "RayJob",
                                     "spec": {}}))
    with pytest.raises(ConfigError, match="not a RayCluster manifest"):
        rayservice(CONFIG, name="m", cluster=wrong)


def test_all_adds_the_other_live_applications_the_caller_may_see(monkeypatch):
    """``serve deploy`` replaces the whole Serve state: --all writes every application the
    caller may see, each with its live routing (Serve's answers are stood in for here;
    tests/integration/test_cluster_jobs.py exports from a real Serve)."""
    from types import SimpleNamespace

    from raymlops.serving import app as serving_app
    from raymlops.serving import deploy as serving_deploy
    from raymlops.serving.export import serve_config
    from raymlops.tenancy import Tenant

    apps = {name: {"name": name, "route_prefix": f"/{name.replace('.', '/')}",
                   "import_path": "raymlops.serving.app:build_app", "args": {}}
            for name in ("alpha.credit", "alpha.churn", "beta.credit")}
    monkeypatch.setattr(serving_app, "_client", lambda: SimpleNamespace(
        get_serve_details=lambda: {"http_options": {"host": "0.0.0.0", "port": 8000}}))
    monkeypatch.setattr(serving_app, "deployed_configs", lambda: apps)
    monkeypatch.setattr(serving_deploy, "current_routing", lambda name: None)
    alone = serve_config("alpha.credit")
    assert [a["name"] for a in alone["applications"]] == ["alpha.credit"]
    mine = serve_config("alpha.credit", others=Tenant("alpha").sees)
    assert [a["name"] for a in mine["applications"]] == ["alpha.credit", "alpha.churn"]
    every = serve_config("alpha.credit", others=Tenant(None).sees)
    assert [a["name"] for a in every["applications"]] == ["alpha.credit", "alpha.churn",
                                                          "beta.credit"]
