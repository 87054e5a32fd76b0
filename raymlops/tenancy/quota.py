"""A project's quota: the most CPUs and GPUs its jobs may hold at once.

Ray has no quotas of its own, so raymlops enforces them in three places:

- **by construction**: a job of a project with a quota runs Ray Data within it
  (``DataContext.execution_options.resource_limits``) and Tune with at most as many
  concurrent trials as fit; a job whose own peak (its Train workers, its trials) is
  above the quota is a config error naming the key;
- **before a job starts** (:func:`admit`): what the project's live jobs hold now, plus
  this job's peak, must fit, or the job stops at once with
  :class:`~raymlops.errors.QuotaExceededError` (retryable: exit 75);
- **while it runs** (:class:`QuotaWatch`): the project's holdings are read every
  ``check_interval_s``; over the quota for ``tolerance_checks`` checks in a row, the
  job is interrupted and fails with QuotaExceededError.

What a project holds is read from Ray's State API for the jobs whose driver runs in the
project's Ray namespace: the bundles of their placement groups (Train and Tune reserve
these), plus their actors and running tasks outside placement groups. Serve replicas
belong to Serve's controller and are bounded by the deployment's own
``replicas``/``autoscaling.max_replicas``, not by this quota.
"""

from __future__ import annotations

import _thread
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from raymlops.errors import ConfigError, QuotaExceededError

log = logging.getLogger("raymlops")
LIMIT = 10_000
KEYS = (("CPU", "cpus"), ("GPU", "gpus"))


def project_jobs(namespace: str) -> set[str]:
    """Hex ids of the live jobs whose driver runs in ``namespace``."""
    from ray._private.worker import global_worker

    gcs = global_worker.gcs_client  # type: ignore[attr-defined]
    return {job_id.hex() for job_id, info in gcs.get_all_job_info().items()
            if not info.is_dead and info.config.ray_namespace == namespace}


def held(namespace: str) -> dict[str, float]:
    """CPUs and GPUs the project's live jobs hold now."""
    from ray.util.state import list_actors, list_placement_groups, list_tasks

    jobs = project_jobs(namespace)
    total = {"CPU": 0.0, "GPU": 0.0}

    def add(resources: dict[str, Any] | None) -> None:
        for key in total:
            total[key] += float((resources or {}).get(key, 0.0))

    if not jobs:
        return total
    for group in list_placement_groups(detail=True, limit=LIMIT, raise_on_missing_output=False):
        if group.creator_job_id in jobs and group.state == "CREATED":
            for bundle in group.bundles or []:
                add(bundle.get("unit_resources") if isinstance(bundle, dict) else None)
    for job in jobs:
        for actor in list_actors(filters=[("job_id", "=", job), ("state", "=", "ALIVE")],
                                 detail=True, limit=LIMIT, raise_on_missing_output=False):
            if not actor.placement_group_id:
                add(actor.required_resources)
        for task in list_tasks(filters=[("job_id", "=", job), ("state", "=", "RUNNING"),
                                        ("type", "=", "NORMAL_TASK")],
                               detail=True, limit=LIMIT, raise_on_missing_output=False):
            if not task.placement_group_id:
                add(task.required_resources)
    return {key: round(value, 3) for key, value in total.items()}


def peak(config: Any) -> dict[str, float]:
    """What this job holds at most by itself: its Train workers, times its concurrent
    trials when it tunes (the driver and Ray Data run within the quota anyway)."""
    scaling = config.train.scaling
    tune = config.train.tune
    trials = tune.max_concurrent if tune is not None else 1
    workers = scaling.num_workers * trials
    return {"CPU": workers * scaling.cpus_per_worker,
            "GPU": workers * (scaling.gpus_per_worker if scaling.use_gpu else 0.0)}


def limits(config: Any) -> dict[str, float]:
    quota = config.tenancy.quota if getattr(config, "tenancy", None) is not None else None
    if quota is None:
        return {}
    return {ray_key: float(value) for ray_key, key in KEYS
            if (value := getattr(quota, key)) is not None}


def check_config(config: Any) -> None:
    """A job whose own peak is above the quota can never run: a config error."""
    quota = limits(config)
    need = peak(config)
    for ray_key, key in KEYS:
        if ray_key in quota and need[ray_key] > quota[ray_key]:
            raise ConfigError(
                f"tenancy.quota.{key}: {quota[ray_key]:g} is below what this job's training "
                f"holds at once ({need[ray_key]:g}: train.scaling.num_workers x "
                f"{'gpus' if ray_key == 'GPU' else 'cpus'}_per_worker x "
                "train.tune.max_concurrent); lower those or raise the quota")


def apply_limits(config: Any, held_before: dict[str, float] | None = None) -> None:
    """Run Ray Data in this process within what the quota leaves: the quota less what
    the project's other jobs held when this one was admitted."""
    quota = limits(config)
    if not quota:
        return
    from ray.data import DataContext, ExecutionResources

    held_before = held_before or {}
    left = {k: max(0.0, v - held_before.get(k, 0.0)) for k, v in quota.items()}
    options = DataContext.get_current().execution_options
    cpu = left.get("CPU")
    # a Ray Data task asks for a whole CPU: below one, nothing would ever be scheduled
    options.resource_limits = ExecutionResources(
        cpu=None if cpu is None else max(cpu, 1.0), gpu=left.get("GPU"))


def admit(config: Any, namespace: str, record: Callable[[str, dict[str, Any]], None]
          ) -> dict[str, float]:
    """Before the job's first stage: the project's holdings plus this job's peak must fit.
    Returns what the project held then."""
    quota = limits(config)
    if not quota:
        return {}
    now, need = held(namespace), peak(config)
    over = [f"{ray_key} {now[ray_key]:g} held + {need[ray_key]:g} for this job > "
            f"tenancy.quota.{key} {quota[ray_key]:g}"
            for ray_key, key in KEYS if ray_key in quota and now[ray_key] + need[ray_key]
            > quota[ray_key] + 1e-9]
    payload = {"project": namespace, "held": now, "peak": need, "quota": quota,
               "admitted": not over}
    if over:
        reason = (f"project {namespace!r} is at its quota: {'; '.join(over)}; run again when "
                  "its other jobs finish")
        record(reason, payload)
        raise QuotaExceededError(reason)
    record(f"project {namespace!r} admitted: holds {now}, this job needs up to {need}, "
           f"quota {quota}", payload)
    return now


@dataclass
class QuotaWatch:
    """Reads the project's holdings while the job runs; over the quota for
    ``tolerance`` checks in a row, records why and interrupts the main thread."""

    namespace: str
    quota: dict[str, float]
    record: Callable[[str, dict[str, Any]], None]
    interval_s: float = 2.0
    tolerance: int = 3
    reason: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> QuotaWatch:
        if self.quota:
            self._thread = threading.Thread(target=self._watch, daemon=True,
                                            name="raymlops-quota")
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        strikes = 0
        while not self._stop.wait(self.interval_s):
            try:
                now = held(self.namespace)
            except Exception as exc:  # noqa: BLE001 - a missed reading is not a violation
                log.debug("quota: holdings of %s unknown: %s", self.namespace, exc)
                continue
            over = {k: v for k, v in now.items() if k in self.quota and v > self.quota[k] + 1e-9}
            strikes = strikes + 1 if over else 0
            if strikes >= self.tolerance and not self._stop.is_set():
                self.reason = (f"project {self.namespace!r} held {now} for {strikes} checks "
                               f"{self.interval_s:g}s apart, over tenancy.quota {self.quota}; "
                               "the job was stopped")
                self.record(self.reason, {"project": self.namespace, "held": now,
                                          "quota": self.quota, "checks": strikes})
                _thread.interrupt_main()
                return
