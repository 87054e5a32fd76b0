"""What Ray's GCS key-value store holds for a project's quota (namespace
``raymlops-quota``), so that every job and the platform see the same:

- ``<project>/.quota``: the platform's quota for the project (``raymlops quota set``),
  which a job's own ``tenancy.quota`` can lower but never raise;
- ``<project>/<job>``: what an admitted job reserved (its peak) until it ends, so a job
  admitted but not yet holding its placement groups still counts;
- ``<project>/.admitting``: the admission lock, one admission at a time per project.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

from raymlops.errors import QuotaExceededError

log = logging.getLogger("raymlops")
KV_NAMESPACE = "raymlops-quota"
MISSED_WARN = 3
LOCK_STALE_S = 60.0


def _kv() -> Any:
    from ray.experimental import internal_kv

    return internal_kv


def reserve(namespace: str, job: str, need: dict[str, float]) -> None:
    _kv()._internal_kv_put(f"{namespace}/{job}", json.dumps(need), True,
                           namespace=KV_NAMESPACE)


def release(namespace: str, job: str) -> None:
    _kv()._internal_kv_del(f"{namespace}/{job}", namespace=KV_NAMESPACE)


def _reserved_jobs(namespace: str) -> list[str]:
    keys = _kv()._internal_kv_list(f"{namespace}/", namespace=KV_NAMESPACE)
    jobs = ((key.decode() if isinstance(key, bytes) else key).split("/", 1)[1] for key in keys)
    return [job for job in jobs if not job.startswith(".")]


def reservations(namespace: str, live: set[str]) -> dict[str, dict[str, float]]:
    """The peaks reserved by the project's live jobs (a reservation of a job not in
    ``live`` is ignored here, and dropped by the next admission once the job is dead)."""
    kv, out = _kv(), {}
    for job in _reserved_jobs(namespace):
        if job not in live:
            continue
        value = kv._internal_kv_get(f"{namespace}/{job}", namespace=KV_NAMESPACE)
        if value is not None:
            out[job] = {k: float(v) for k, v in json.loads(value).items()}
    return out


def drop_ended(namespace: str) -> None:
    """Drop the reservations of the project's jobs that GCS reports dead or no longer
    knows (called under the admission lock, so no admission is half-way)."""
    alive = live_jobs()
    for job in _reserved_jobs(namespace):
        if job not in alive:
            release(namespace, job)


def live_jobs(namespace: str | None = None) -> dict[str, int]:
    """Hex ids of the cluster's live jobs (those whose driver runs in ``namespace``, if
    given), with their start times (ms since the epoch), from the GCS job table."""
    from ray._private.worker import global_worker

    gcs = global_worker.gcs_client  # type: ignore[attr-defined]
    return {job_id.hex(): int(info.start_time) for job_id, info in gcs.get_all_job_info().items()
            if not info.is_dead and namespace in (None, info.config.ray_namespace)}


@contextlib.contextmanager
def admission_lock(namespace: str, job: str, timeout_s: float = 30.0) -> Iterator[None]:
    """One admission at a time per project (GCS KV put-if-absent), so that two jobs
    starting together cannot both count the same free CPUs. A lock older than
    ``LOCK_STALE_S`` (its holder died mid-admission) is taken over; GCS's KV store has
    no compare-and-swap, so the takeover re-reads the lock it found stale and releases
    only a lock that is still its own (a narrow window, not an atomic one)."""
    kv, key = _kv(), f"{namespace}/.admitting"
    mine = json.dumps({"job": job, "at": time.time()}).encode()
    deadline = time.monotonic() + timeout_s
    while kv._internal_kv_put(key, mine, False, namespace=KV_NAMESPACE):
        value = kv._internal_kv_get(key, namespace=KV_NAMESPACE)
        if value is not None and time.time() - json.loads(value)["at"] > LOCK_STALE_S:
            if kv._internal_kv_get(key, namespace=KV_NAMESPACE) == value:  # still stale
                log.warning("quota: taking over project %s's admission lock from %s, held "
                            "over %gs", namespace, json.loads(value)["job"], LOCK_STALE_S)
                kv._internal_kv_del(key, namespace=KV_NAMESPACE)
            continue
        if time.monotonic() > deadline:
            raise QuotaExceededError(f"project {namespace!r}: another job's admission held "
                                     f"the lock for {timeout_s:g}s; run again")
        time.sleep(0.1)
    try:
        yield
    finally:
        if kv._internal_kv_get(key, namespace=KV_NAMESPACE) == mine:
            kv._internal_kv_del(key, namespace=KV_NAMESPACE)


# -- the platform's quota --------------------------------------------------------------

def platform_quota(namespace: str) -> dict[str, float]:
    """The platform's quota for a project ({} when none is set)."""
    value = _kv()._internal_kv_get(f"{namespace}/.quota", namespace=KV_NAMESPACE)
    return {k: float(v) for k, v in json.loads(value).items()} if value else {}


def set_platform_quota(namespace: str, quota: dict[str, float]) -> None:
    _kv()._internal_kv_put(f"{namespace}/.quota", json.dumps(quota), True,
                           namespace=KV_NAMESPACE)


def clear_platform_quota(namespace: str) -> bool:
    """Whether there was one."""
    kv, key = _kv(), f"{namespace}/.quota"
    existed = kv._internal_kv_get(key, namespace=KV_NAMESPACE) is not None
    kv._internal_kv_del(key, namespace=KV_NAMESPACE)
    return existed


def platform_quotas() -> dict[str, dict[str, float]]:
    """Every project's platform quota."""
    out = {}
    for key in _kv()._internal_kv_list("", namespace=KV_NAMESPACE):
        name = key.decode() if isinstance(key, bytes) else key
        if name.endswith("/.quota"):
            out[name.removesuffix("/.quota")] = platform_quota(name.removesuffix("/.quota"))
    return out
