"""A project's quota on a real Ray head, with real jobs (``JobSubmissionClient``): a job
that would take the project over its quota is refused before its first stage, the
newest job is the one stopped when the project goes over while it runs, and another
project's holdings do not count against it. Holdings are what Ray's State API says the
project's jobs (their drivers in the project's Ray namespace) hold."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.ray_head import follow, ray_head, runtime_env

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
HOLDER = '''
import pathlib, sys, time
import ray
ray.init(namespace=sys.argv[1])

@ray.remote(num_cpus=float(sys.argv[2]))
class Hold:
    def ready(self):
        return True

hold = Hold.remote()
ray.get(hold.ready.remote())
print("holding", flush=True)
grow = pathlib.Path(sys.argv[3]) if len(sys.argv) > 3 else None
deadline = time.monotonic() + 900
while time.monotonic() < deadline:
    if grow is not None and grow.exists():  # hold more: an older holder growing
        more = Hold.options(num_cpus=float(grow.read_text())).remote()
        ray.get(more.ready.remote())
        print("grown", flush=True)
        grow = None
    time.sleep(0.2)
'''


def _config(tmp: Path, project: str, data: Path, cpus: float | None) -> Path:
    raw = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    quota = {"check_interval_s": 0.5, "tolerance_checks": 2}
    raw.update(project=project, tenancy={"quota": quota if cpus is None else
                                         {**quota, "cpus": cpus}})
    raw["data"]["source"] = str(data / "train.csv")
    raw["deploy"]["name"] = "credit"
    path = tmp / f"{project}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _wait_for(client, job: str, text: str, timeout_s: float = 240) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        logs = client.get_job_logs(job)
        if text in logs:
            return logs
        if client.get_job_status(job).is_terminal():
            pytest.fail(f"job {job} ended before printing {text!r}:\n{logs[-3000:]}")
        time.sleep(0.5)
    pytest.fail(f"job {job} did not print {text!r} within {timeout_s:.0f}s")


def test_a_quota_is_enforced_before_a_job_starts_and_while_it_runs(tmp_path):
    from ray.job_submission import JobStatus, JobSubmissionClient

    from raymlops.data.demo import write_demo_data
    from raymlops.lineage.audit import AuditTrail
    from raymlops.lineage.store import LineageStore
    from raymlops.workspace import Workspace

    ws = Workspace.at(tmp_path / "workdir").ensure()
    write_demo_data(ws.demo_data_dir, rows=3000, production_rows=300)
    holder = tmp_path / "holder.py"
    holder.write_text(HOLDER)
    env = {"env_vars": runtime_env()["env_vars"]}
    # alpha's quota is the platform's (raymlops quota set, in the cluster), its config
    # names none; beta's is its config's own
    configs = {"alpha": _config(tmp_path, "alpha", ws.demo_data_dir, None),
               "beta": _config(tmp_path, "beta", ws.demo_data_dir, 2)}

    def train(project: str) -> str:
        return client.submit_job(
            entrypoint=f"{sys.executable} {ROOT}/jobs/train.py {configs[project]} "
                       f"--workdir {ws.root}", runtime_env=env, entrypoint_num_cpus=0)

    def hold(project: str, cpus: float, grow: Path | None = None) -> str:
        job = client.submit_job(entrypoint=f"{sys.executable} {holder} {project} {cpus} "
                                           f"{grow or ''}", runtime_env=env,
                                entrypoint_num_cpus=0)
        _wait_for(client, job, "holding")
        return job

    with ray_head(num_cpus=6) as head:
        client = JobSubmissionClient(head.dashboard)

        # the platform sets alpha's quota in the cluster, as a job (`ray job submit --
        # raymlops quota set ...`); a caller acting as the project is refused before
        # anything is read
        refused_set = subprocess.run(
            [sys.executable, "-m", "raymlops.cli", "quota", "set", "alpha", "--cpus", "99",
             "--project", "alpha", "--address", head.gcs_address], env=head.env,
            capture_output=True, text=True, timeout=120, check=False)
        assert refused_set.returncode == 7, refused_set.stderr
        setter = client.submit_job(
            entrypoint=f"{sys.executable} -m raymlops.cli quota set alpha --cpus 2 "
                       f"--as platform-admin --workdir {ws.root}", runtime_env=env,
            entrypoint_num_cpus=0)
        logs = follow(client, setter, timeout_s=300)
        assert client.get_job_info(setter).driver_exit_code == 0, logs[-3000:]
        assert "project alpha: quota {'CPU': 2.0} (was none)" in logs

        # 1. alpha already holds 1.5 of its 2 CPUs: a job needing 1 more is refused at once
        first_hold = hold("alpha", 1.5)
        refused = train("alpha")
        logs = follow(client, refused, timeout_s=300)
        info = client.get_job_info(refused)
        assert info.status == JobStatus.FAILED and info.driver_exit_code == 75, logs[-3000:]
        assert ("at its quota: CPU 1.5 held + 1 for this job > the platform's quota for "
                "cpus (raymlops quota set) 2") in logs
        assert "stage ingest     started" not in logs  # refused before any stage

        # 2. another project's holdings do not count: beta is admitted meanwhile
        beta = train("beta")
        _wait_for(client, beta, "project 'beta' admitted")
        client.stop_job(beta)
        client.stop_job(first_hold)

        # 3. admitted beside an older holder of 0.5 CPU; the older holder grows by 1.5
        #    while the job runs, and the job, the newest, is the one that gives way
        grow = tmp_path / "grow"
        older = hold("alpha", 0.5, grow)
        running = train("alpha")
        _wait_for(client, running, "stage ingest     started")
        grow.write_text("1.5")
        _wait_for(client, older, "grown")
        logs = follow(client, running, timeout_s=300)
        info = client.get_job_info(running)
        assert not client.get_job_status(older).is_terminal()  # the older one keeps its CPUs
        client.stop_job(older)
        assert info.status == JobStatus.FAILED and info.driver_exit_code == 75, logs[-3000:]
        assert "over the quota {'CPU': 2.0}; the job was stopped (newest first)" in logs
        assert "the 1 started before it" in logs

    store = LineageStore(ws.lineage_url)
    kinds = [(e.payload.get("project"), e.kind, e.payload.get("admitted"))
             for kind in ("quota_checked", "quota_exceeded") for e in store.events(kind=kind)]
    assert ("alpha", "quota_checked", False) in kinds
    assert ("beta", "quota_checked", True) in kinds
    assert ("alpha", "quota_checked", True) in kinds
    assert ("alpha", "quota_exceeded", None) in kinds
    entries = AuditTrail(ws.lineage_url).entries()
    actions = [entry.action for entry in entries]
    assert "quota_exceeded" in actions and "quota_checked" in actions
    [set_by] = [e for e in entries if e.action == "quota_set"]
    assert set_by.actor == "platform-admin" and set_by.object == "project:alpha"
