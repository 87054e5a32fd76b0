"""A real Ray head started with ``ray start --head``, beside the session's Ray, and stopped
by killing only its own processes (``ray stop`` would stop every Ray on the machine).

Its temp dir is its own, so its address file (``ray_current_cluster``) is too: a process
that calls ``ray.init()`` without an address never joins it by accident.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import requests
import yaml

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Head:
    gcs_address: str
    dashboard: str  # http://127.0.0.1:PORT, what JobSubmissionClient and the State API take
    temp_dir: Path
    env: dict[str, str]


def _ours(temp_dir: Path) -> list[psutil.Process]:
    mine = []
    for process in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(str(temp_dir) in part for part in process.info["cmdline"] or []):
                mine.append(process)
    return mine


def auth_headers() -> dict[str, str]:
    """Ray's token (token auth is on): the dashboard answers 401 without it."""
    token = Path.home() / ".ray" / "auth_token"
    return {"Authorization": f"Bearer {token.read_text().strip()}"} if token.exists() else {}


@contextlib.contextmanager
def ray_head(*, num_cpus: int, args: list[str] | None = None,
             env: dict[str, str] | None = None, port: int | None = None,
             timeout_s: float = 120) -> Iterator[Head]:
    # short: Ray's Unix sockets live under it (a path over 107 bytes fails)
    temp_dir = Path(tempfile.mkdtemp(prefix="rh", dir="/tmp"))
    port, dashboard_port, agent_port = port or free_port(), free_port(), free_port()
    full_env = {**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "token"),
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                **(env or {})}
    for leaked in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        full_env.pop(leaked, None)  # the session's, set by its fixtures: not the cluster's
    # its processes (Train's placement-group cleaner, a job's driver) find its State API
    # by name, not by looking for the one Ray on the machine (see pinned_state_api)
    full_env["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{dashboard_port}"
    ray = str(Path(sys.executable).parent / "ray")
    log = (temp_dir / "ray-start.log").open("w")
    process = subprocess.Popen(
        [ray, "start", "--head", "--block", f"--port={port}", f"--num-cpus={num_cpus}",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}",
         f"--temp-dir={temp_dir}", "--disable-usage-stats",
         # fixed by default (52365, 10001, ...): the session's Ray holds them already
         f"--dashboard-agent-listen-port={agent_port}",
         f"--dashboard-agent-grpc-port={free_port()}", f"--metrics-export-port={free_port()}",
         f"--runtime-env-agent-port={free_port()}", f"--ray-client-server-port={free_port()}",
         *(args or [])],
        env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    dashboard = f"http://127.0.0.1:{dashboard_port}"
    try:
        deadline = time.monotonic() + timeout_s
        # the dashboard first, then the head's dashboard agent: a job is submitted through
        # the agent, and the dashboard answers "No available agent to submit job" when it
        # finds none within 10 s (CI saw that on a loaded box). The agent registers itself
        # in the GCS right after its HTTP server starts.
        for what, url in (("dashboard", f"{dashboard}/api/version"),
                          ("dashboard agent", f"http://127.0.0.1:{agent_port}/api/healthz")):
            while True:
                if process.poll() is not None:
                    pytest.fail(f"`ray start --head` exited with {process.returncode}:\n"
                                + (temp_dir / "ray-start.log").read_text()[-3000:])
                with contextlib.suppress(requests.RequestException):
                    if requests.get(url, timeout=2, headers=auth_headers()).ok:
                        break
                # the agent stays up without HTTP when its port was taken: say so now
                for agent_log in temp_dir.glob("session_*/logs/dashboard_agent.log"):
                    if "Failed to start HTTP server" in agent_log.read_text(errors="replace"):
                        pytest.fail(f"the Ray head's dashboard agent could not serve HTTP on "
                                    f"port {agent_port}: see {agent_log}")
                if time.monotonic() > deadline:
                    pytest.fail(f"the Ray head's {what} did not answer at {url} within "
                                f"{timeout_s:.0f}s")
                time.sleep(0.5)
        from ray._private.services import get_node_ip_address

        yield Head(f"{get_node_ip_address()}:{port}", dashboard, temp_dir, full_env)
    finally:
        process.send_signal(signal.SIGINT)  # `ray start --block` stops its node on exit
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
        for leftover in _ours(temp_dir):  # anything it left (workers, autoscaled nodes)
            with contextlib.suppress(psutil.Error):
                leftover.kill()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        log.close()
        if os.environ.get("RAYMLOPS_KEEP_HEAD_LOGS"):  # debugging: keep the head's logs
            shutil.copytree(temp_dir, os.environ["RAYMLOPS_KEEP_HEAD_LOGS"] + temp_dir.name,
                            symlinks=True, ignore_dangling_symlinks=True,
                            ignore=shutil.ignore_patterns("*.sock", "sockets"))
        shutil.rmtree(temp_dir, ignore_errors=True)


def runtime_env() -> dict:
    """What the README's `ray job submit --working-dir . --runtime-env ...` sends."""
    return {**yaml.safe_load((ROOT / "cluster" / "runtime_env.yaml").read_text()),
            "working_dir": str(ROOT)}


def follow(client, job_id: str, timeout_s: float) -> str:
    """The job's log, followed live until the job ends (as `ray job logs -f` does)."""
    async def tail() -> str:
        chunks = []
        async for chunk in client.tail_job_logs(job_id):
            chunks.append(chunk)
        return "".join(chunks)

    try:
        return asyncio.run(asyncio.wait_for(tail(), timeout_s))
    except TimeoutError:
        client.stop_job(job_id)
        pytest.fail(f"job {job_id} still running after {timeout_s:.0f}s:\n"
                    + client.get_job_logs(job_id)[-3000:])
