"""The cluster files are checked offline: the launcher YAMLs against Ray's own schema,
the KubeRay manifests against KubeRay's v1 CRD schemas (vendored from its repository,
descriptions removed: tests/data/kuberay/)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.kuberay_schema import check as _check

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
LAUNCHERS = ["aws-autoscaling.yaml", "gcp-autoscaling.yaml", "local.yaml"]
MANIFESTS = {"raycluster.yaml": "RayCluster", "rayjob.yaml": "RayJob",
             "rayservice.yaml": "RayService"}


def _prepared(name: str) -> dict[str, Any]:
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(yaml.safe_load((CLUSTER / name).read_text()))
    validate_config(prepared)
    return prepared


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_yaml_passes_rays_schema(name):
    prepared = _prepared(name)
    assert prepared["cluster_name"].startswith("raymlops")
    starts = prepared["head_start_ray_commands"] + prepared["worker_start_ray_commands"]
    assert all("RAY_AUTH_MODE=token" in cmd for cmd in starts if "ray start" in cmd)
    installs = prepared["head_setup_commands"] + prepared["worker_setup_commands"]
    assert any("raymlops[postgres]" in cmd for cmd in installs)
    # token auth needs the token on every node: `ray start` refuses to start without it
    assert prepared["file_mounts"].get("/home/ray/.ray/auth_token") == "~/.ray/auth_token"
    assert {".git", ".venv", ".raymlops"} <= set(prepared.get("rsync_exclude") or [])


@pytest.mark.parametrize("name", ["aws-autoscaling.yaml", "gcp-autoscaling.yaml"])
def test_cloud_launchers_autoscale_cpu_and_gpu_workers_from_zero(name):
    prepared = _prepared(name)
    types = prepared["available_node_types"]
    assert set(types) == {"head", "cpu_worker", "gpu_worker"}
    assert "GPU" not in types["head"]["resources"]
    assert types["cpu_worker"]["min_workers"] == 0 < types["cpu_worker"]["max_workers"]
    gpu = types["gpu_worker"]
    assert gpu["min_workers"] == 0 < gpu["max_workers"] and gpu["resources"]["GPU"] >= 1
    region = prepared["provider"]["region"]
    for node_type in types.values():
        assert node_type["labels"]["region"] == region
    assert types["cpu_worker"]["labels"]["accelerator"] == "none"
    assert gpu["labels"]["accelerator"].startswith("nvidia-")
    # GPU nodes replace the CPU build of torch with the CUDA one, at the pinned version
    cuda = [c for c in gpu["worker_setup_commands"] if "torch==" in c]
    assert cuda and all("whl/cu" in c for c in cuda)
    cpu = [c for c in prepared["worker_setup_commands"] if "torch==" in c]
    assert cpu and all("whl/cpu" in c for c in cpu)


def test_local_launcher_lists_its_machines():
    prepared = _prepared("local.yaml")
    assert prepared["provider"]["type"] == "local" and prepared["provider"]["worker_ips"]


def test_launcher_schema_check_catches_mistakes():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((CLUSTER / "aws-autoscaling.yaml").read_text())
    config["available_node_types"]["cpu_worker"]["max_wrokers"] = 3
    with pytest.raises(Exception, match="max_wrokers"):
        validate_config(prepare_config(config))


@pytest.mark.parametrize("name", sorted(MANIFESTS))
def test_kuberay_manifest_matches_its_crd(name):
    _check(yaml.safe_load((CLUSTER / "kuberay" / name).read_text()), MANIFESTS[name])


def test_crd_check_catches_a_missing_required_field_and_a_typo():
    manifest = yaml.safe_load((CLUSTER / "kuberay" / "raycluster.yaml").read_text())
    broken = copy.deepcopy(manifest)
    del broken["spec"]["workerGroupSpecs"][0]["groupName"]
    with pytest.raises(jsonschema.ValidationError, match="groupName"):
        _check(broken, "RayCluster")
    typo = copy.deepcopy(manifest)
    typo["spec"]["workerGroupSpecs"][0]["maxReplica"] = 3
    with pytest.raises(jsonschema.ValidationError, match="maxReplica"):
        _check(typo, "RayCluster")


def _cluster_spec(manifest: dict[str, Any]) -> dict[str, Any]:
    spec = manifest["spec"]
    return spec.get("rayClusterSpec") or spec.get("rayClusterConfig") or spec


@pytest.mark.parametrize("name", sorted(MANIFESTS))
def test_kuberay_clusters_autoscale_cpu_and_gpu_groups_with_token_auth(name):
    spec = _cluster_spec(yaml.safe_load((CLUSTER / "kuberay" / name).read_text()))
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["authOptions"]["mode"] == "token"
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}
    assert groups["gpu"]["minReplicas"] == 0 < groups["gpu"]["maxReplicas"]
    gpu = groups["gpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert gpu["nvidia.com/gpu"] == "1"
    assert groups["gpu"]["labels"]["accelerator"].startswith("nvidia-")
    for group in [spec["headGroupSpec"], *groups.values()]:
        env = {e["name"]: e.get("value", e.get("valueFrom"))
               for e in group["template"]["spec"]["containers"][0]["env"]}
        assert env["RAY_AUTH_MODE"] == "token"


def test_every_rayjob_pod_mounts_the_shared_workdir_and_reads_credentials_from_a_secret():
    """Stages of one run may land on any pod: the --workdir of the entrypoint is a
    volume every pod mounts, and no password is in the manifest or the config."""
    job = yaml.safe_load((CLUSTER / "kuberay" / "rayjob.yaml").read_text())
    workdir = job["spec"]["entrypoint"].split("--workdir ")[1].split()[0]
    spec = job["spec"]["rayClusterSpec"]
    for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
        pod = group["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        [mount] = [m for m in pod["containers"][0]["volumeMounts"] if m["mountPath"] == workdir]
        assert "persistentVolumeClaim" in volumes[mount["name"]]
        env = {e["name"]: e for e in pod["containers"][0]["env"]}
        assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "raymlops-stores"
    assert "password" not in (ROOT / "configs" / "team.yaml").read_text().lower()


def test_rayservice_carries_a_valid_serve_config():
    from ray.serve.schema import ServeDeploySchema

    manifest = yaml.safe_load((CLUSTER / "kuberay" / "rayservice.yaml").read_text())
    serve_config = ServeDeploySchema.model_validate(yaml.safe_load(
        manifest["spec"]["serveConfigV2"]))
    [app] = serve_config.applications
    assert app.import_path == "raymlops.serving.app:build_app"


def test_rayjob_trains_up_to_evaluate_and_does_not_retry_permanent_failures():
    manifest = yaml.safe_load((CLUSTER / "kuberay" / "rayjob.yaml").read_text())
    entrypoint = manifest["spec"]["entrypoint"]
    assert "jobs/evaluate.py" in entrypoint and "data.source=" in entrypoint
    assert (ROOT / "jobs" / "evaluate.py").exists()
    assert manifest["spec"]["backoffLimit"] == 0  # KubeRay would rerun a gate rejection


def test_runtime_env_ships_the_code_not_the_environment():
    runtime_env = yaml.safe_load((CLUSTER / "runtime_env.yaml").read_text())
    assert {".venv/", ".git/", ".raymlops/"} <= set(runtime_env["excludes"])
    assert "pip" not in runtime_env  # the nodes have the dependencies; a job installs none
