"""The cluster YAMLs are checked offline: the launcher's against Ray's own schema."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"


def test_launcher_yaml_passes_rays_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((CLUSTER / "aws-autoscaling.yaml").read_text())
    prepared = prepare_config(config)
    validate_config(prepared)
    types = prepared["available_node_types"]
    assert types["cpu_worker"]["min_workers"] == 0 < types["cpu_worker"]["max_workers"]
    assert types["gpu_worker"]["node_config"]["InstanceType"].startswith("g")
    assert all("RAY_AUTH_MODE=token" in cmd for cmd in prepared["head_start_ray_commands"][1:])


def test_launcher_schema_check_catches_mistakes():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((CLUSTER / "aws-autoscaling.yaml").read_text())
    config["available_node_types"]["cpu_worker"]["max_wrokers"] = 3
    with pytest.raises(Exception, match="max_wrokers"):
        validate_config(prepare_config(config))


def test_kuberay_cluster_autoscales_cpu_and_gpu_groups():
    manifest = yaml.safe_load((CLUSTER / "kuberay" / "raycluster.yaml").read_text())
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == "RayCluster"
    spec = manifest["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}
    gpu = groups["gpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert gpu["nvidia.com/gpu"] == "1"
    for group in [spec["headGroupSpec"], *groups.values()]:
        env = {e["name"]: e["value"] for e in group["template"]["spec"]["containers"][0]["env"]}
        assert env["RAY_AUTH_MODE"] == "token"


def test_runtime_env_installs_the_working_dir():
    runtime_env = yaml.safe_load((CLUSTER / "runtime_env.yaml").read_text())
    assert runtime_env["pip"]["packages"] == ["-e ."]
