"""A small control actor per served model, which every replica follows.

A Serve handle call reaches one replica, so "flush your capture" sent through a handle
reached one replica per version, and a monitor with two replicas waited out its timeout
and computed drift on partial data. Here the request goes to the control actor instead:
it bumps a flush epoch; every replica polls the actor a few times a second, flushes when
the epoch moved, and acknowledges. ``flush_all`` returns once every running replica has
acknowledged. The same channel is where a rollout controller will push traffic weights,
because ``user_config`` reaches replicas in batches of 20% and a rollback cannot wait.
"""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger(__name__)

NAMESPACE = "raymlops"


def control_name(app: str) -> str:
    return f"raymlops-control:{app}"


class ServingControl:
    """The actor's state: a flush epoch and each replica's last acknowledgement."""

    def __init__(self) -> None:
        # Epochs start at the clock, in milliseconds: a restarted actor (its state lost)
        # never hands out an epoch a replica already acknowledged.
        self.epoch = int(time.time() * 1000)
        self.acks: dict[str, tuple[int, int, float]] = {}  # replica -> (epoch, written, at)

    def request_flush(self) -> int:
        self.epoch += 1
        return self.epoch

    def poll(self, replica: str, acked_epoch: int, written: int) -> int:
        """A replica reports the epoch it flushed for; the answer is the epoch to reach."""
        self.acks[replica] = (acked_epoch, written, time.time())
        return self.epoch

    def leave(self, replica: str) -> None:
        self.acks.pop(replica, None)

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
                             get_if_exists=True).remote()


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
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(acked)} of {expected} replicas of {app} flushed their "
                               f"capture within {timeout_s:.0f}s")
        time.sleep(0.05)
