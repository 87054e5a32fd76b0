"""Fault injection in training: a Ray Train worker process is killed mid-run (SIGKILL).

With ``train.failure.max_failures`` left, Ray Train restarts the worker group and the
loop continues from the latest checkpoint. With none left the run fails, and a rerun
with the same run id (so the same Ray Train run name) continues from that checkpoint
instead of starting over. Either way the metric ends close to an undisturbed run.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from raymlops.errors import RetryableError
from tests.training_helpers import train_config, train_on, train_run_name

pytestmark = pytest.mark.integration


def _train_workers() -> list[int]:
    """PIDs of this session Ray's live Ray Train workers, from the State API: another
    pytest worker's Ray on the same machine trains too, and its workers are not ours."""
    from ray.util.state import list_actors

    from raymlops._internal.ray_runtime import state_address

    return [a.pid for a in list_actors(address=state_address(),
                                       filters=[("class_name", "=", "RayTrainWorker"),
                                                ("state", "=", "ALIVE")],
                                       detail=True, raise_on_missing_output=False) if a.pid]


def _kill_after_a_checkpoint(storage: Path, name: str, outcome: dict) -> None:
    """Wait (up to 120 s) until the run has registered a checkpoint, then SIGKILL its
    worker.

    A checkpoint folder appears as soon as a worker uploads it, but the run knows it
    only once the controller has taken the report (it polls every few seconds) and
    written its snapshot; a kill before that point leaves nothing to resume from.
    """
    snapshot = storage / name / "checkpoint_manager_snapshot.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if snapshot.exists() and "checkpoint_" in snapshot.read_text():
            pids = _train_workers()
            if pids:
                outcome["killed"] = pids
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
                return
        time.sleep(0.05)
    outcome["killed"] = []


def _train_with_a_kill(prepared, config, run: str):
    workdir = prepared["root"] / f"ws-{run}"
    outcome: dict = {}
    killer = threading.Thread(target=_kill_after_a_checkpoint,
                              args=(workdir / "ray_results", train_run_name(config, run),
                                    outcome))
    killer.start()
    try:
        result = train_on(prepared, config, run, workdir=workdir)[0]
    finally:
        killer.join()
    assert outcome["killed"], "no Ray Train worker was found to kill"
    return result


def test_killed_torch_worker_resumes_from_the_latest_checkpoint(prepared):
    config = train_config("torch", params={"epochs": 5, "batch_size": 128, "patience": 10},
                          failure={"max_failures": 2})
    calm = train_on(prepared, config, "calm-torch")[0]
    hit = _train_with_a_kill(prepared, config, "hit-torch")
    assert calm.final_metrics["resumed_from_epoch"] == 0
    assert hit.final_metrics["resumed_from_epoch"] >= 1  # not started over
    assert hit.final_metrics["epoch"] == 5
    assert hit.final_metrics["valid_loss"] == pytest.approx(calm.final_metrics["valid_loss"],
                                                            abs=0.01)


def test_rerun_of_a_failed_xgboost_run_continues_from_its_checkpoint(prepared):
    config = train_config("xgboost", params={"num_boost_round": 400, "max_depth": 8},
                          checkpoint={"frequency": 50}, failure={"max_failures": 0})
    calm = train_on(prepared, config, "calm-xgb")[0]
    with pytest.raises(RetryableError, match="resumed with --run-id"):
        _train_with_a_kill(prepared, config, "hit-xgb")
    again = train_on(prepared, config, "hit-xgb", workdir=prepared["root"] / "ws-hit-xgb")[0]
    assert again.final_metrics["resumed_from_round"] >= 50
    assert again.final_metrics["rounds"] == 400
    assert again.final_metrics["valid_logloss"] == pytest.approx(
        calm.final_metrics["valid_logloss"], abs=0.01)
