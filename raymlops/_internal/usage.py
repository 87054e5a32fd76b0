"""What a run used, per stage, from Ray's own accounting.

- **CPU- and GPU-seconds** are what the run's tasks and actors held: each one's
  ``required_resources`` times the part of its lifetime inside the stage's window.
  This is what Ray reserved for them and what a shared cluster cannot give anyone else,
  so it is what a team is charged for, as with Kubernetes requests. It comes from the
  State API (tasks, with their start and end) and the GCS actor table (actors, with
  theirs), for this driver's job only. Serve replicas belong to the Serve controller's
  job, so serving is not counted here.
- **Peak memory** is the highest memory in use across the cluster's nodes during the
  stage: each live node's memory in use as its reporter last read it (the number Ray
  exports as ``ray_node_mem_used``), from the dashboard's node summary, read when
  the stage starts, when it ends, and once per reporter update between (Ray's
  ``REPORTER_UPDATE_INTERVAL_MS``, 5 s by default). The node reporters refresh it that
  often, so a stage shorter than that may show the value from before it. It counts
  everything on those nodes, not this run alone.
- **Spilled bytes** are the object store's ``spilled_bytes_total``, cluster-wide, taken
  at each end of the stage.

Ray's task events reach the GCS asynchronously, so the run collects them once at its
end rather than after each stage, in one call of each kind.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("raymlops")
#: how many tasks and actors one collection reads at most (Ray's API server limit)
LIMIT = 10_000
FIELDS = ("cpu_seconds", "gpu_seconds", "peak_memory_bytes", "spilled_bytes")


@dataclass
class _Window:
    start: float
    end: float | None = None
    spilled_before: int | None = None
    spilled_after: int | None = None
    peak_memory: float = 0.0
    memory_reads: int = 0  # how many reads of the nodes' memory answered

    def saw_memory(self, used: float) -> None:
        self.peak_memory = max(self.peak_memory, used)
        self.memory_reads += 1


def _reporter_interval_s() -> float:
    try:
        from ray.dashboard.modules.reporter.reporter_consts import REPORTER_UPDATE_INTERVAL_MS
    except ImportError:  # pragma: no cover - the constant moved
        return 5.0
    return max(1.0, REPORTER_UPDATE_INTERVAL_MS / 1000)


@dataclass
class UsageMeter:
    """Stage windows during a run; the usage in each, once the run is over."""

    windows: dict[str, _Window] = field(default_factory=dict)
    #: a node's memory reading changes once per reporter update (Ray's
    #: REPORTER_UPDATE_INTERVAL_MS, 5 s): reading it more often only costs the
    #: dashboard a request that answers the same
    interval_s: float = field(default_factory=_reporter_interval_s)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _current: str | None = None

    def begin(self, stage: str) -> None:
        window = self.windows[stage] = _Window(time.time(), spilled_before=_spilled())
        with contextlib.suppress(Exception):  # a missed read is not a failed stage
            window.saw_memory(_node_memory())
        self._current = stage
        if self._thread is None:
            self._thread = threading.Thread(target=self._sample, daemon=True,
                                            name="raymlops-usage")
            self._thread.start()

    def end(self, stage: str) -> None:
        window = self.windows[stage]
        window.end, window.spilled_after = time.time(), _spilled()
        with contextlib.suppress(Exception):
            window.saw_memory(_node_memory())
        self._current = None

    def close(self) -> None:
        self._stop.set()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            stage = self._current
            if stage is None:
                continue
            try:
                used = _node_memory()
            except Exception as exc:  # noqa: BLE001 - a missed sample is not a failed stage
                log.debug("usage: memory sample missed: %s", exc)
                continue
            window = self.windows.get(stage)
            if window is not None:
                window.saw_memory(used)

    def collect(self) -> dict[str, dict[str, float]]:
        """Per stage that ran: CPU-seconds, GPU-seconds, peak memory, spilled bytes."""
        self.close()
        if not self.windows:
            return {}
        try:
            held = _held_resources()
        except Exception as exc:  # noqa: BLE001 - no State API: say so, record what is known
            log.warning("usage: the State API did not answer (%s: %s); CPU- and "
                        "GPU-seconds are not recorded for this run", type(exc).__name__, exc)
            held = None
        now = time.time()
        out: dict[str, dict[str, float]] = {}
        for stage, window in self.windows.items():
            end = window.end or now
            cpu = gpu = 0.0
            for start, stop, resources in held or []:
                overlap = min(stop or now, end) - max(start, window.start)
                if overlap > 0:
                    cpu += overlap * float(resources.get("CPU", 0.0))
                    gpu += overlap * float(resources.get("GPU", 0.0))
            spilled = 0
            if window.spilled_before is not None and window.spilled_after is not None:
                spilled = max(0, window.spilled_after - window.spilled_before)
            out[stage] = {"cpu_seconds": round(cpu, 3), "gpu_seconds": round(gpu, 3),
                          "peak_memory_bytes": float(window.peak_memory),
                          "spilled_bytes": float(spilled),
                          "wall_seconds": round(end - window.start, 3)}
            if held is None:
                out[stage]["unmeasured"] = 1.0
            if not window.memory_reads:  # 0 would read as "used no memory"
                out[stage]["memory_unmeasured"] = 1.0
        missed = sorted(s for s, w in self.windows.items() if not w.memory_reads)
        if missed:
            log.warning("usage: no memory reading answered during %s; their peak memory "
                        "is not recorded (memory_unmeasured)", ", ".join(missed))
        return out


def totals(per_stage: dict[str, dict[str, float]]) -> dict[str, float]:
    """A run's totals: sums, and the highest peak."""
    total = dict.fromkeys((*FIELDS, "wall_seconds"), 0.0)
    for usage in per_stage.values():
        for key in ("cpu_seconds", "gpu_seconds", "spilled_bytes", "wall_seconds"):
            total[key] += float(usage.get(key, 0.0))
        total["peak_memory_bytes"] = max(total["peak_memory_bytes"],
                                         float(usage.get("peak_memory_bytes", 0.0)))
    return {k: round(v, 3) for k, v in total.items()}


def _held_resources() -> list[tuple[float, float | None, dict[str, float]]]:
    """(start, end or None, resources) of this job's tasks and actors, in seconds."""
    import ray
    from ray.util.state import list_actors, list_tasks

    from raymlops._internal.ray_runtime import state_address

    job, address = ray.get_runtime_context().get_job_id(), state_address()
    held: list[tuple[float, float | None, dict[str, float]]] = []
    for task in list_tasks(address=address, filters=[("job_id", "=", job),
                                                     ("type", "=", "NORMAL_TASK")],
                           detail=True, limit=LIMIT, raise_on_missing_output=False):
        if task.start_time_ms:
            held.append((task.start_time_ms / 1000, (task.end_time_ms or 0) / 1000 or None,
                         dict(task.required_resources or {})))
    resources = {a.actor_id: dict(a.required_resources or {}) for a in list_actors(
        address=address, filters=[("job_id", "=", job)], detail=True, limit=LIMIT,
        raise_on_missing_output=False)}
    from ray._private.state import actors as actor_table

    for actor_id, info in (actor_table() or {}).items():
        if actor_id in resources and info.get("StartTime"):
            end = info.get("EndTime") or 0
            held.append((info["StartTime"] / 1000, end / 1000 or None, resources[actor_id]))
    return held


def _spilled() -> int | None:
    try:
        from ray._private.internal_api import get_memory_info_reply, get_state_from_address
        from ray._private.worker import global_worker

        node = global_worker.node
        if node is None:
            return None
        state = get_state_from_address(node.address)
        return int(get_memory_info_reply(state, timeout_seconds=10).store_stats
                   .spilled_bytes_total)
    except Exception as exc:  # noqa: BLE001 - private API; recorded as unknown
        log.debug("usage: spilled bytes unknown: %s", exc)
        return None


def _node_memory() -> float:
    """Memory in use on every live node now (bytes): the dashboard's node summary, which
    holds each node reporter's last reading, the same number as Ray's
    ``ray_node_mem_used`` gauge. Not each node's ``/metrics`` page first: that carries
    every series the node ever exported (Ray Data's per-dataset histograms, Serve's
    per-replica ones), and on a long-lived cluster it grew to 10 MB, about a second of
    the agent's CPU per read (seen in CI, read every 5 s by every running stage). A
    driver that cannot reach the dashboard (one on a worker node of a head whose
    dashboard listens on 127.0.0.1) reads the nodes' pages instead."""
    import requests

    try:
        return _memory_from_summary()
    except (requests.RequestException, LookupError, ValueError) as exc:
        log.debug("usage: no node summary from the dashboard (%s); reading the nodes' "
                  "metrics pages", exc)
        return _memory_from_metrics()


def _memory_from_summary() -> float:
    """Memory in use on the live nodes, from the dashboard's ``/nodes?view=summary``."""
    import requests
    from ray._private.authentication.http_token_authentication import (
        get_auth_headers_if_auth_enabled,
    )

    answer = requests.get(f"{_dashboard_url()}/nodes?view=summary", timeout=5,
                          headers=get_auth_headers_if_auth_enabled({}))
    answer.raise_for_status()
    return _memory_in_use(answer.json())


def _memory_from_metrics() -> float:
    """``ray_node_mem_used`` summed over the live nodes' metrics pages."""
    import requests

    from raymlops._internal.ray_runtime import node_metrics_endpoints

    used = 0.0
    for url in node_metrics_endpoints():
        text = requests.get(url, timeout=5).text
        used += sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                    if line.startswith("ray_node_mem_used{"))
    return used


def _dashboard_url() -> str:
    """The dashboard of the cluster this driver is connected to, as its GCS records it."""
    from ray._private import ray_constants
    from ray.experimental.internal_kv import _internal_kv_get, _internal_kv_initialized

    if not _internal_kv_initialized():
        raise LookupError("not connected to a Ray cluster")
    address = _internal_kv_get(ray_constants.DASHBOARD_ADDRESS,
                               namespace=ray_constants.KV_NAMESPACE_DASHBOARD)
    if not address:
        raise LookupError("the cluster runs no dashboard")
    text = address.decode() if isinstance(address, bytes) else str(address)
    return text if "://" in text else f"http://{text}"


def _memory_in_use(summary: dict[str, Any]) -> float:
    """Sum of ``mem`` = [total, available, percent, used] over the live nodes."""
    used = 0.0
    for node in (summary.get("data") or {}).get("summary") or []:
        mem = node.get("mem") or []
        if len(mem) >= 4 and (node.get("raylet") or {}).get("state") == "ALIVE":
            used += float(mem[3])
    return used


def cost(usage: dict[str, float], prices: dict[str, Any]) -> float:
    """Money for ``usage`` at ``prices`` (``cpu_hour``, ``gpu_hour``)."""
    return round(float(usage.get("cpu_seconds", 0.0)) / 3600 * float(prices.get("cpu_hour", 0))
                 + float(usage.get("gpu_seconds", 0.0)) / 3600
                 * float(prices.get("gpu_hour", 0)), 6)
