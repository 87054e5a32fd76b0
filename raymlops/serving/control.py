"""A small control actor per served model, which every replica follows.

A Serve handle call reaches one replica, so "flush your capture" sent through a handle
reached one replica per version, and a monitor with two replicas waited out its timeout
and computed drift on partial data. Here the request goes to the control actor instead:
it bumps a flush epoch; every replica polls the actor a few times a second, flushes when
the epoch moved, and acknowledges. ``flush_all`` returns once every running replica has
acknowledged. The same channel is where a rollout controller will push traffic weights,
because ``user_config`` reaches replicas in batches of 20% and a rollback cannot wait.

The actor is detached, so that routing outlives the driver that deployed it. It ends
itself once its application is gone: after ``RAYMLOPS_CONTROL_IDLE_S`` (default 300 s)
without a call from a replica or a deploy, it asks Serve whether the application still
exists, and if not, it kills itself (an application deleted with ``serve.delete`` left
its actor, a process, behind for good).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

log = logging.getLogger(__name__)

NAMESPACE = "raymlops"


def control_name(app: str) -> str:
    return f"raymlops-control:{app}"


def idle_s() -> float:
    return float(os.environ.get("RAYMLOPS_CONTROL_IDLE_S", "300"))


def should_end(idle_for: float, limit: float, app_exists: bool) -> bool:
    """Whether a control actor idle for ``idle_for`` seconds ends itself."""
    return idle_for >= limit and not app_exists


class ServingControl:
    """The actor's state: a flush epoch and each replica's last acknowledgement."""

    def __init__(self, app: str | None = None) -> None:
        self.app = app
        self.active = time.monotonic()
        if app is not None:
            threading.Thread(target=self._end_when_gone, daemon=True,
                             name="raymlops-control-reaper").start()
        # Epochs start at the clock, in milliseconds: a restarted actor (its state lost)
        # never hands out an epoch a replica already acknowledged.
        self.epoch = int(time.time() * 1000)
        self.acks: dict[str, tuple[int, int, float]] = {}  # replica -> (epoch, written, at)
        self.state: dict[str, Any] | None = None  # the routing state (RoutingState.to_dict)
        self.seen: dict[str, int] = {}  # replica -> the routing generation it routes by
        self.failures: dict[str, tuple[int, str]] = {}  # replica -> (generation, why)

    def _end_when_gone(self) -> None:
        limit = idle_s()
        while True:
            time.sleep(max(1.0, min(30.0, limit / 2)))
            idle_for = time.monotonic() - self.active
            if idle_for < limit:
                continue
            if not should_end(idle_for, limit, _app_exists(self.app)):
                self.active = time.monotonic()
                continue
            import ray

            log.warning("raymlops: control actor of %s ends: the application is gone and "
                        "nothing called for %.0fs", self.app, idle_for)
            ray.kill(ray.get_runtime_context().current_actor, no_restart=True)
            return

    def request_flush(self) -> int:
        self.active = time.monotonic()
        self.epoch += 1
        return self.epoch

    def poll(self, replica: str, acked_epoch: int, written: int,
             generation: int = 0) -> tuple[int, int]:
        """A replica reports the flush epoch it reached and the routing generation it
        routes by; the answer is the epoch to reach and the newest routing generation."""
        self.active = time.monotonic()
        self.acks[replica] = (acked_epoch, written, time.time())
        self.seen[replica] = generation
        return self.epoch, self.generation()

    def generation(self) -> int:
        return int(self.state["generation"]) if self.state else 0

    def set_routing(self, state: dict[str, Any]) -> int:
        """Keep ``state`` if it is newer than the one held; returns the generation held."""
        self.active = time.monotonic()
        if int(state.get("generation", 0)) > self.generation():
            self.state = dict(state)
        return self.generation()

    def routing(self) -> dict[str, Any] | None:
        return self.state

    def report_failure(self, replica: str, generation: int, message: str) -> None:
        self.failures[replica] = (generation, message)

    def failed(self, generation: int) -> dict[str, str]:
        """Replicas that could not take ``generation`` (a version failed to load)."""
        return {r: m for r, (g, m) in self.failures.items() if g == generation}

    def routed_by(self, generation: int, deployments: list[str] | None = None
                  ) -> dict[str, int]:
        """Replicas (of ``deployments``) routing by ``generation`` or a newer one."""
        return {r: g for r, g in self.seen.items() if g >= generation and (
            deployments is None or r.split("#", 1)[0] in deployments)}

    def leave(self, replica: str) -> None:
        self.acks.pop(replica, None)
        self.seen.pop(replica, None)

    def acknowledged(self, epoch: int, deployments: list[str] | None = None) -> dict[str, int]:
        """Replicas (of ``deployments``) that flushed for ``epoch`` or later, with the rows
        each wrote. A replica's key is ``<deployment>#<replica id>``."""
        return {r: written for r, (acked, written, _) in self.acks.items()
                if acked >= epoch and (deployments is None
                                       or r.split("#", 1)[0] in deployments)}


def get_or_create(app: str) -> Any:
    import ray

    actor_cls = ray.remote(num_cpus=0, max_restarts=-1)(ServingControl)
    return actor_cls.options(name=control_name(app), namespace=NAMESPACE, lifetime="detached",
                             get_if_exists=True).remote(app)


def _app_exists(app: str | None) -> bool:
    """Whether Serve still has ``app``; True when that cannot be told (keep the actor)."""
    from ray import serve
    from ray.serve.exceptions import RayServeException

    try:
        return app in serve.status().applications
    except RayServeException:
        return False  # no Serve instance: no application either
    except Exception:  # noqa: BLE001 - the controller is busy or restarting: ask later
        return True


def lookup(app: str) -> Any:
    import ray

    return ray.get_actor(control_name(app), namespace=NAMESPACE)


def running_replicas(app: str, deployments: list[str]) -> int:
    from ray import serve

    status = serve.status().applications.get(app)
    if status is None:
        return 0
    total = 0
    for name in deployments:
        deployment = status.deployments.get(name)
        if deployment is not None:
            total += sum(int(count) for state, count in deployment.replica_states.items()
                         if getattr(state, "value", state) == "RUNNING")
    return total


def flush_all(app: str, deployments: list[str], timeout_s: float = 30.0) -> int:
    """Ask every replica of ``deployments`` to write its buffered capture; wait for all.

    Returns the rows the replicas have written in total. Raises ``TimeoutError`` naming
    how many replicas answered when some did not within ``timeout_s``.
    """
    import ray

    control = lookup(app)
    epoch = ray.get(control.request_flush.remote(), timeout=10)
    deadline = time.monotonic() + timeout_s
    while True:
        acked = ray.get(control.acknowledged.remote(epoch, deployments), timeout=10)
        expected = running_replicas(app, deployments)
        if expected and len(acked) >= expected:
            return int(sum(acked.values()))
        if not expected and time.monotonic() > deadline - timeout_s + 2:
            return int(sum(acked.values()))  # no replica runs (scaled to zero)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(acked)} of {expected} replicas of {app} flushed their "
                               f"capture within {timeout_s:.0f}s")
        time.sleep(0.05)
