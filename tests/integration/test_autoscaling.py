"""Autoscaling for real on one machine: Ray's own autoscaler with its fake multi-node
provider, which starts and stops real raylets as nodes (what
``ray.cluster_utils.AutoscalingCluster`` sets up).

A worker type holds a custom resource standing in for a GPU and scales from 0. A
training job whose workers ask for that resource (``train.scaling.resources``) makes the
autoscaler add such a node, its Ray Train worker runs there, and the node goes away once
idle. The cluster is started here as AutoscalingCluster would start it (its config, with
``RAY_FAKE_CLUSTER=1`` and a one-second autoscaler loop), but not by its ``start()``:
that runs ``ray stop --force``, which would stop every Ray on the machine, the test
session's included; and the 2.60 wheel leaves out the ``example.yaml`` its constructor
reads. The head is stopped by killing its own processes only (tests/ray_head.py).

The job ships no ``working_dir``, unlike the README's ``ray job submit`` (which
tests/integration/test_cluster_jobs.py runs): the fake provider's nodes share the head's
session directory, so the new node unpacking the same working_dir package replaces the
directory the driver runs in (seen: ``FileNotFoundError`` from ``os.getcwd()`` mid-job).
Real nodes have their own disks. raymlops comes from the installed package instead.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.ray_head import follow, ray_head, runtime_env

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
ACCELERATOR = "fake_gpu"
IDLE_TIMEOUT_MINUTES = 0.1


def _fake_cluster_config(gcs_address: str) -> dict:
    """AutoscalingCluster's generated config (fake_multi_node/example.yaml's fields)."""
    return {
        "cluster_name": "raymlops-fake", "max_workers": 1, "upscaling_speed": 1.0,
        "idle_timeout_minutes": IDLE_TIMEOUT_MINUTES,
        "provider": {"type": "fake_multinode", "use_node_id_as_ip": True,
                     "disable_node_updaters": True, "disable_launch_config_check": True,
                     "gcs_address": gcs_address},
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 2}, "node_config": {},
                                 "max_workers": 0},
            "accelerator_worker": {
                "resources": {"CPU": 1, ACCELERATOR: 1,
                              "object_store_memory": 300 * 1024 * 1024},
                "labels": {"accelerator": "fake-gpu"},
                "node_config": {}, "min_workers": 0, "max_workers": 1}},
        "head_node_type": "ray.head.default",
        "auth": {}, "docker": {}, "initialization_commands": [], "setup_commands": [],
        "head_setup_commands": [], "worker_setup_commands": [],
        "head_start_ray_commands": [], "worker_start_ray_commands": [], "file_mounts": {},
        "cluster_synced_files": [], "file_mounts_sync_continuously": False,
        "rsync_exclude": [], "rsync_filter": []}


def _accelerator_nodes(dashboard: str) -> list:
    from ray.util.state import list_nodes

    return [n for n in list_nodes(address=dashboard, detail=True, raise_on_missing_output=False)
            if (n.resources_total or {}).get(ACCELERATOR)]


def test_a_training_job_scales_an_accelerator_node_up_from_zero_and_back(tmp_path):
    from ray._private.services import get_node_ip_address
    from ray.job_submission import JobStatus, JobSubmissionClient
    from ray.util.state import list_actors

    from raymlops.data.demo import write_demo_data
    from raymlops.workspace import Workspace

    port = free_port()
    config_path = tmp_path / "autoscaling.json"
    config_path.write_text(json.dumps(_fake_cluster_config(f"{get_node_ip_address()}:{port}")))
    ws = Workspace.at(tmp_path / "workdir").ensure()
    write_demo_data(ws.demo_data_dir, rows=4000, production_rows=500)
    with ray_head(num_cpus=2, port=port, args=[f"--autoscaling-config={config_path}"],
                  env={"RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}) as head:
        assert _accelerator_nodes(head.dashboard) == []  # scaled to zero
        client = JobSubmissionClient(head.dashboard)
        job = client.submit_job(
            entrypoint=(f"{sys.executable} {ROOT}/jobs/train.py {ROOT}/configs/demo.yaml "
                        f"--workdir {ws.root} "
                        f"--set 'train.scaling.resources={{{ACCELERATOR}: 1}}'"),
            runtime_env={"env_vars": runtime_env()["env_vars"]}, entrypoint_num_cpus=0)
        logs = follow(client, job, timeout_s=900)
        info = client.get_job_info(job)
        assert info.status == JobStatus.SUCCEEDED, logs[-4000:]
        [node] = _accelerator_nodes(head.dashboard)  # the autoscaler added one
        assert node.labels.get("accelerator") == "fake-gpu"
        workers = [a for a in list_actors(address=head.dashboard, detail=True, limit=10_000,
                                          raise_on_missing_output=False)
                   if a.class_name == "RayTrainWorker"]
        assert workers and {a.node_id for a in workers} == {node.node_id}  # it ran there
        summary = json.loads(next(ws.runs_dir.glob("*/summary.json")).read_text())
        assert summary["status"] == "paused" and "after stage train" in summary["message"]
        # idle once the job is done: removed after the idle timeout
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            alive = [n for n in _accelerator_nodes(head.dashboard) if n.state == "ALIVE"]
            if not alive:
                break
            time.sleep(1)
        assert not alive, f"still up {120}s after the job: {alive}"

