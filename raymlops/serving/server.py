"""The Ray Serve deployments of both serving shapes.

- **Co-located** (``ModelServer``): one deployment per model and environment whose
  replicas hold every live version (champion, canaries, shadows), each in a
  ``VersionSlot`` with its own ``@serve.batch`` queue. A request is parsed, routed and
  scored in the process that received it: no extra hop. A version that crashes its
  process takes the others in that replica down with it.
- **Separate** (``Ingress`` in front of one ``VersionServer`` deployment per version):
  for versions too large to co-locate, or with other resources (a GPU version beside a
  CPU one). The ingress holds a handle per version; scoring is one more hop.

Both answer through ``raymlops.serving.frontend`` and route by
``raymlops.serving.routing``. The routing state arrives in ``user_config`` (a
reconfigure, no restart: a new version is loaded in place) and, faster, from the
model's control actor, which every replica polls a few times a second.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from ray import serve
from starlette.requests import Request
from starlette.responses import Response

from raymlops.serving.capture import CaptureBuffer, Follower
from raymlops.serving.frontend import Frontend, FrontendSettings
from raymlops.serving.metrics import ServingMetrics
from raymlops.serving.routing import RoutingState, RoutingTable
from raymlops.serving.slot import Batching, Job, Scored, VersionSlot, load_model

log = logging.getLogger("ray.serve")
_ADOPTING = threading.Lock()


def _replica_id(deployment: str) -> str:
    """``<deployment>#<replica id>``: how the control actor tells replicas apart."""
    try:
        unique = str(serve.get_replica_context().replica_id.unique_id)
    except Exception:  # noqa: BLE001 - outside Serve (unit tests)
        unique = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
    return f"{deployment}#{unique}"


def _capture_dir(settings: dict[str, Any], version: str) -> Path | None:
    from raymlops.names import capture_dir

    root = settings.get("capture_root")
    return capture_dir(Path(root), settings["app"], version) if root else None


class NotDeployedHere(Exception):
    """A split names versions this application's deployments do not have yet: the
    redeploy that adds them replaces this replica (not a failure to report)."""


class _Replica:
    """What both shapes' replicas share: settings, metrics, the control actor link."""

    def _start(self, settings: dict[str, Any], deployment: str) -> None:
        import mlflow

        self.settings = settings
        self.app = str(settings["app"])
        mlflow.set_tracking_uri(settings["tracking_uri"])
        if settings.get("mlflow_workspace"):  # a tenant's models live in its workspace
            mlflow.set_workspace(settings["mlflow_workspace"])
        self.metrics = ServingMetrics(self.app)
        self.started = (os.getpid(), time.time())
        self.replica = _replica_id(deployment)
        from raymlops.serving.control import get_or_create

        # made here too: an application applied from an exported config on a fresh
        # cluster has no driver that made it first
        self.control = get_or_create(self.app)

    def _poll(self, acked: int, written: int, generation: int) -> tuple[int, int]:
        import ray

        epoch, newest = ray.get(self.control.poll.remote(self.replica, acked, written,
                                                         generation), timeout=5)
        return int(epoch), int(newest)

    def identity(self) -> dict[str, Any]:
        """Process id and start time: a redeploy that kept this replica keeps them."""
        return {"pid": self.started[0], "started": self.started[1], "replica": self.replica}

    def __del__(self) -> None:
        follower = getattr(self, "follower", None)
        if follower is not None:
            written = follower.stop()
            log.info("replica %s: capture flushed on shutdown (%d rows written in all)",
                     getattr(self, "replica", "?"), written)


class _Routed(_Replica):
    """A replica that routes: it holds the routing table and follows the control actor."""

    _table: RoutingTable | None = None
    frontend: Frontend

    def _frontend(self, settings: dict[str, Any]) -> Frontend:
        routing = settings.get("routing") or {}
        return Frontend(FrontendSettings(
            app=self.app, max_body_bytes=int(settings.get("max_body_bytes", 8 << 20)),
            allow_override=bool(routing.get("allow_override", False)),
            sticky_header=str(routing.get("sticky_header", "x-routing-key")).lower(),
            sticky_field=routing.get("sticky_field"), prefix=settings.get("prefix")), self,  # type: ignore[arg-type]
            self.metrics)

    def table(self) -> RoutingTable:
        if self._table is None:
            from raymlops.serving.protocol import BadRequest

            raise BadRequest("model", "not ready: this replica has no routing state yet",
                             status=503)
        return self._table

    def ready(self) -> bool:
        return self._table is not None

    def generation(self) -> int:
        return self._table.state.generation if self._table is not None else 0

    def reconfigure(self, config: dict[str, Any]) -> None:
        """A ``user_config`` state. The first one (a starting replica) is taken here, or
        the control actor's if that is newer (a replica replacing a dead one after a
        change sent only to the actor); a later one is handed to the control actor,
        and the follower thread loads and takes it, off the replica's event loop."""
        import ray

        state = RoutingState.from_dict(config["routing"])
        if self._table is None:
            raw = ray.get(self.control.routing.remote(), timeout=10)
            if raw is not None and int(raw["generation"]) > state.generation:
                state = RoutingState.from_dict(raw)
            self._adopt(state)
        self.control.set_routing.remote(state.to_dict())

    def _follow(self, generation: int) -> int:
        import ray

        failed = getattr(self, "_failed", None)
        if failed is not None and failed[0] == generation and time.monotonic() - failed[1] < 5:
            return self.generation()  # a version that failed to load: retried every 5 s
        raw = ray.get(self.control.routing.remote(), timeout=5)
        if raw is not None and int(raw["generation"]) >= generation:
            try:
                self._adopt(RoutingState.from_dict(raw))
            except NotDeployedHere:
                pass  # the separate shape's new deployments replace this replica
            except Exception as exc:  # noqa: BLE001 - reported to the deploy that waits
                self._failed = (generation, time.monotonic())
                first = str(exc).splitlines()[0] if str(exc) else ""
                message = f"{type(exc).__name__}: {first}"
                log.error("%s: cannot take routing generation %d: %s", self.replica,
                          generation, message)
                self.control.report_failure.remote(self.replica, generation, message)
        return self.generation()

    def _adopt(self, state: RoutingState) -> None:
        # the follower thread and a reconfigure may bring the same state at once
        with _ADOPTING:
            if state.generation > self.generation():
                self._take(state)

    def _take(self, state: RoutingState) -> None:
        self._prepare(state)
        self._table = RoutingTable(state)
        self.metrics.weights(state.weights, state.shadows)
        log.info("%s: routing generation %d: weights %s, shadows %s", self.replica,
                 state.generation, state.weights, state.shadows or "none")

    def _prepare(self, state: RoutingState) -> None:
        """Make every version of ``state`` scoreable before routing by it."""

    async def __call__(self, request: Request) -> Response:
        return await self.frontend.handle(request)


@serve.deployment
class ModelServer(_Routed):
    """Co-located: every live version of one model in each replica."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self._start(settings, str(settings["app"]))  # the deployment is named as the app
        self.slots: dict[str, VersionSlot] = {}
        self.retired: dict[str, VersionSlot] = {}
        batching = settings.get("batching") or {}
        self.batching = Batching(int(batching.get("max_batch_size", 16)),
                                 float(batching.get("batch_wait_timeout_s", 0.002)))
        self.frontend = self._frontend(settings)
        self.follower = Follower(self._buffers, self._poll, follow=self._follow,
                                 generation=self.generation)

    def _buffers(self) -> list[CaptureBuffer]:
        return [s.capture for s in (*self.slots.values(), *self.retired.values())]

    def _prepare(self, state: RoutingState) -> None:
        slots = dict(self.slots)
        for version, uri in state.versions.items():
            if version not in slots:
                started = time.perf_counter()
                model = load_model(uri, self.settings["tracking_uri"])
                slots[version] = VersionSlot(
                    version, model, capture_dir=_capture_dir(self.settings, version),
                    capture=self.settings.get("capture"), batching=self.batching,
                    metrics=self.metrics)
                log.info("%s: loaded version %s from %s in %.2fs", self.replica, version,
                         uri, time.perf_counter() - started)
        for old in self.retired.values():
            old.capture.flush()
        self.retired = {v: s for v, s in slots.items() if v not in state.versions}
        self.slots = {v: s for v, s in slots.items() if v in state.versions}

    def _slot(self, version: str) -> VersionSlot:
        slot = self.slots.get(version) or self.retired.get(version)
        if slot is None:
            raise KeyError(f"version {version} is not loaded in {self.replica}")
        return slot

    async def describe(self, version: str) -> dict[str, Any]:
        return self._slot(version).describe()

    async def score(self, version: str, job: Job) -> Scored:
        return await self._slot(version).submit(job)

    def flush(self) -> int:
        return self.follower.flush()

    def features_of(self, version: str, frame: Any) -> list[list[float]]:
        """The feature vectors a version here feeds its model (train/serve skew checks)."""
        return self._slot(version).features.transform(frame, raw=True).tolist()


@serve.deployment
class VersionServer(_Replica):
    """Separate: one model version in its own deployment."""

    def __init__(self, settings: dict[str, Any], version: str, uri: str) -> None:
        self._start(settings, version_deployment(settings["app"], version))
        batching = settings.get("batching") or {}
        self.slot = VersionSlot(
            version, load_model(uri, settings["tracking_uri"]),
            capture_dir=_capture_dir(settings, version), capture=settings.get("capture"),
            batching=Batching(int(batching.get("max_batch_size", 16)),
                              float(batching.get("batch_wait_timeout_s", 0.002))),
            metrics=self.metrics)
        self.follower = Follower(lambda: [self.slot.capture], self._poll)

    async def score(self, job: Job) -> Scored:
        return await self.slot.submit(job)

    def describe(self) -> dict[str, Any]:
        return self.slot.describe()

    def flush(self) -> int:
        return self.follower.flush()


def version_deployment(app: str, version: str) -> str:
    return f"{app}-v{version}"


@serve.deployment
class Ingress(_Routed):
    """Separate: routes each request to the deployment of the version it chose."""

    def __init__(self, settings: dict[str, Any], handles: dict[str, Any]) -> None:
        self._start(settings, str(settings["app"]))  # the deployment is named as the app
        self.handles = handles
        self.described: dict[str, dict[str, Any]] = {}
        self.frontend = self._frontend(settings)
        self.follower = Follower(list, self._poll, follow=self._follow,
                                 generation=self.generation)

    def _prepare(self, state: RoutingState) -> None:
        missing = sorted(set(state.versions) - set(self.handles))
        if missing:
            raise NotDeployedHere(f"routing names versions {missing} that have no "
                                  "deployment in this application yet")

    async def describe(self, version: str) -> dict[str, Any]:
        if version not in self.described:
            self.described[version] = await self.handles[version].describe.remote()
        return self.described[version]

    async def score(self, version: str, job: Job) -> Scored:
        result: Scored = await self.handles[version].score.remote(job)
        return result
