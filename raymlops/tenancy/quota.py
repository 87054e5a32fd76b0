"""A project's quota: the most CPUs and GPUs its jobs may hold at once.

Ray has no quotas of its own, so raymlops enforces them in four places:

- **where it is set**: the platform sets a project's quota in Ray's GCS key-value
  store (``raymlops quota set``, :mod:`raymlops.tenancy.ledger`); a job's own
  ``tenancy.quota`` can lower it, never raise it. A job with a ``tenancy`` section
  runs under the lower of the two;
- **by construction**: such a job runs Ray Data within its own reservation
  (``DataContext.execution_options.resource_limits``); a job whose own peak (its Train
  workers, its trials) is above the quota is a config error naming the key;
- **before a job starts** (:func:`admit`): what the project's other live jobs hold or
  have reserved, plus this job's peak, must fit, or the job stops at once with
  :class:`~raymlops.errors.QuotaExceededError` (retryable: exit 75). Admissions in one
  project take turns (a lock in Ray's GCS key-value store), and an admitted job
  reserves its peak there until it ends, so two jobs starting together cannot both
  count the same free CPUs;
- **while it runs** (:class:`QuotaWatch`): the project's holdings are read every
  ``check_interval_s``; when this job and the older ones hold more than the quota for
  ``tolerance_checks`` checks in a row, the job is interrupted and fails with
  QuotaExceededError. Newest first: a job that pushes the project over stops itself;
  the older jobs go on.

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
from raymlops.tenancy.ledger import (
    MISSED_WARN,
    admission_lock,
    drop_ended,
    live_jobs,
    reservations,
    reserve,
)

log = logging.getLogger("raymlops")
LIMIT = 10_000
KEYS = (("CPU", "cpus"), ("GPU", "gpus"))


@dataclass(frozen=True)
class Holding:
    """What one live job of the project holds: the larger of what Ray says it holds now
    and what it reserved when admitted (its peak), per resource."""

    job: str
    started_ms: int
    resources: dict[str, float]


def _actual(jobs: set[str]) -> dict[str, dict[str, float]]:
    """Per job: placement-group bundles (Train and Tune reserve these), plus actors and
    running tasks outside placement groups, from Ray's State API."""
    from ray.util.state import list_actors, list_placement_groups, list_tasks

    from raymlops._internal.ray_runtime import state_address

    out = {job: {"CPU": 0.0, "GPU": 0.0} for job in jobs}
    at = state_address()

    def full(items: list[Any], what: str) -> list[Any]:
        if len(items) >= LIMIT:
            log.warning("quota: the State API returned its limit of %d %s; holdings beyond "
                        "it are not counted", LIMIT, what)
        return items

    def add(job: str, resources: dict[str, Any] | None) -> None:
        for key in out[job]:
            out[job][key] += float((resources or {}).get(key, 0.0))

    for group in full(list_placement_groups(address=at, detail=True, limit=LIMIT,
                                            raise_on_missing_output=False), "placement groups"):
        if group.creator_job_id in jobs and group.state == "CREATED":
            for bundle in group.bundles or []:
                add(group.creator_job_id,
                    bundle.get("unit_resources") if isinstance(bundle, dict) else None)
    for job in jobs:
        for actor in full(list_actors(address=at, filters=[("job_id", "=", job),
                                                           ("state", "=", "ALIVE")],
                                      detail=True, limit=LIMIT, raise_on_missing_output=False),
                          "actors"):
            if not actor.placement_group_id:
                add(job, actor.required_resources)
        for task in full(list_tasks(address=at, filters=[("job_id", "=", job),
                                                         ("state", "=", "RUNNING"),
                                                         ("type", "=", "NORMAL_TASK")],
                                    detail=True, limit=LIMIT, raise_on_missing_output=False),
                         "tasks"):
            if not task.placement_group_id:
                add(job, task.required_resources)
    return out


def standing(namespace: str) -> list[Holding]:
    """The project's live jobs, oldest first, each with what it holds or has reserved."""
    jobs = live_jobs(namespace)
    if not jobs:
        return []
    actual = _actual(set(jobs))
    reserved = reservations(namespace, set(jobs))
    return sorted((Holding(job, started, {k: round(max(v, reserved.get(job, {}).get(k, 0.0)), 3)
                                          for k, v in actual[job].items()})
                   for job, started in jobs.items()), key=lambda h: (h.started_ms, h.job))


def total(holdings: list[Holding], skip: str | None = None) -> dict[str, float]:
    out = {"CPU": 0.0, "GPU": 0.0}
    for holding in holdings:
        if holding.job != skip:
            for key in out:
                out[key] += holding.resources.get(key, 0.0)
    return {key: round(value, 3) for key, value in out.items()}


def held(namespace: str) -> dict[str, float]:
    """CPUs and GPUs the project's live jobs hold (or have reserved) now."""
    return total(standing(namespace))


#: the CPU that each Tune trial's own bundle asks for (training/tune.py)
TRIAL_CPU = 0.01


def peak(config: Any) -> dict[str, float]:
    """What this job holds at most by itself, and so what it reserves: its Train
    workers, times its concurrent trials (each with its own small bundle) when it
    tunes; at least one CPU, because its data stages run Ray Data within this same
    reservation (they end, materialized, before training starts)."""
    scaling = config.train.scaling
    tune = config.train.tune
    trials = tune.max_concurrent if tune is not None else 1
    workers = scaling.num_workers * trials
    cpu = workers * scaling.cpus_per_worker + (TRIAL_CPU * trials if tune is not None else 0)
    return {"CPU": round(max(1.0, cpu), 3),
            "GPU": workers * (scaling.gpus_per_worker if scaling.use_gpu else 0.0)}


def limits(config: Any, platform: dict[str, float] | None = None) -> dict[str, float]:
    """The quota the job runs under: its ``tenancy.quota``, within the platform's quota
    for its project (``platform``, from :func:`~raymlops.tenancy.ledger.platform_quota`)."""
    quota = config.tenancy.quota if getattr(config, "tenancy", None) is not None else None
    own = {} if quota is None else {ray_key: float(value) for ray_key, key in KEYS
                                    if (value := getattr(quota, key)) is not None}
    for ray_key, value in (platform or {}).items():
        own[ray_key] = min(own.get(ray_key, value), value)
    return own


def source(config: Any, ray_key: str, platform: dict[str, float] | None = None) -> str:
    """Which quota binds for ``ray_key``: the config's key, or the platform's."""
    key = dict(KEYS)[ray_key]
    own = limits(config)
    if platform and ray_key in platform and (ray_key not in own
                                             or platform[ray_key] < own[ray_key]):
        return f"the platform's quota for {key} (raymlops quota set)"
    return f"tenancy.quota.{key}"


def check_config(config: Any, platform: dict[str, float] | None = None) -> None:
    """A job whose own peak is above the quota can never run: a config error."""
    quota = limits(config, platform)
    need = peak(config)
    for ray_key, key in KEYS:
        if ray_key in quota and need[ray_key] > quota[ray_key]:
            raise ConfigError(
                f"{source(config, ray_key, platform)}: {quota[ray_key]:g} is below what this "
                "job's training "
                f"holds at once ({need[ray_key]:g}: train.scaling.num_workers x "
                f"{key}_per_worker x "
                "train.tune.max_concurrent, at least 1 CPU for its data stages); lower "
                "those or raise the quota")


def apply_limits(config: Any, quota: dict[str, float]) -> None:
    """Run Ray Data in this process within the job's own reservation (its peak, at least
    one CPU: a Ray Data task asks for a whole one), not within whatever the quota has
    free: a job admitted next to this one counts on the rest."""
    if not quota:
        return
    from ray.data import DataContext, ExecutionResources

    need = peak(config)
    options = DataContext.get_current().execution_options
    options.resource_limits = ExecutionResources(
        cpu=need["CPU"] if "CPU" in quota else None,
        gpu=need["GPU"] if "GPU" in quota else None)


def admit(config: Any, namespace: str, record: Callable[[str, dict[str, Any]], None],
          job: str, platform: dict[str, float] | None = None) -> dict[str, float]:
    """Before the job's first stage: what the project's other jobs hold or have reserved,
    plus this job's peak, must fit. Admitted, the job reserves its peak until it ends
    (or holds more). Returns what the others held then."""
    quota = limits(config, platform)
    if not quota:
        return {}
    need = peak(config)
    with admission_lock(namespace, job):
        drop_ended(namespace)
        now = total(standing(namespace), skip=job)
        over = [f"{ray_key} {now[ray_key]:g} held + {need[ray_key]:g} for this job > "
                f"{source(config, ray_key, platform)} {quota[ray_key]:g}"
                for ray_key, _ in KEYS if ray_key in quota and now[ray_key] + need[ray_key]
                > quota[ray_key] + 1e-9]
        if not over:
            reserve(namespace, job, need)
    payload = {"project": namespace, "job": job, "held": now, "peak": need, "quota": quota,
               "platform_quota": platform or {}, "admitted": not over}
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
    """Reads the project's holdings while the job runs. Newest first, as Kueue preempts:
    the job is over the quota when it and the project's jobs started before it hold more
    than the quota, so a newer job (or a newer plain-Ray holder) going over never stops
    an older one. Over for ``tolerance`` checks in a row, it records why and interrupts
    the main thread."""

    namespace: str
    quota: dict[str, float]
    record: Callable[[str, dict[str, Any]], None]
    job: str
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

    def reading(self) -> tuple[dict[str, float], dict[str, float], list[str]]:
        """(what this job and the older ones hold, what the whole project holds, the
        older jobs)."""
        holdings = standing(self.namespace)
        order = [h.job for h in holdings]
        mine = order.index(self.job) + 1 if self.job in order else len(order)
        return total(holdings[:mine]), total(holdings), order[:mine - 1]

    def over(self, held: dict[str, float]) -> set[str]:
        """The resources of which ``held`` is more than the quota."""
        return {k for k, v in held.items() if k in self.quota and v > self.quota[k] + 1e-9}

    def _watch(self) -> None:
        strikes = missed = 0
        while not self._stop.wait(self.interval_s):
            try:
                ahead, project, older = self.reading()
                missed = 0
            except Exception as exc:  # noqa: BLE001 - a missed reading is not a violation
                missed += 1
                (log.warning if missed % MISSED_WARN == 0 else log.debug)(
                    "quota: holdings of project %s unknown for %d checks in a row, so the "
                    "quota is not enforced meanwhile: %s", self.namespace, missed, exc)
                continue
            over = self.over(ahead)
            if not over and any(v > self.quota.get(k, float("inf")) + 1e-9
                                for k, v in project.items()):
                log.debug("quota: project %s holds %s, over %s, through newer jobs; this "
                          "job keeps running", self.namespace, project, self.quota)
            strikes = strikes + 1 if over else 0
            if strikes >= self.tolerance and not self._stop.is_set():
                self.reason = (f"project {self.namespace!r} held {ahead} in this job and the "
                               f"{len(older)} started before it, for {strikes} checks "
                               f"{self.interval_s:g}s apart, over the quota {self.quota}; "
                               "the job was stopped (newest first)")
                self.record(self.reason, {"project": self.namespace, "job": self.job,
                                          "held": ahead, "project_held": project,
                                          "older_jobs": older, "quota": self.quota,
                                          "checks": strikes})
                _thread.interrupt_main()
                return
