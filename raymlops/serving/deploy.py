"""Deploy: serve model versions on Ray Serve with explicit traffic weights and shadows.

Idempotent: the application is deployed declaratively (``raymlops.serving.app``), so its
code version is a hash of the serving settings (and, for the separate shape, its
versions); deploying the same thing again leaves the running replicas as they are, and
a new split or a new co-located version is a ``reconfigure``, pushed first through the
control actor so that every replica routes by it within a poll. The HTTP port is checked first, so
a port taken by another process gives a one-line error instead of a proxy that never
starts.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from pydantic import BaseModel

from raymlops.config import DeployConfig
from raymlops.errors import DeploymentError, PortInUseError

log = logging.getLogger(__name__)


class DeployResult(BaseModel):
    app: str
    endpoint: str
    weights: dict[str, float]
    model_uris: dict[str, str]
    since: str
    #: the router's deployment version: what a resumed run compares with the live one
    deploy_version: str = ""
    previous_weights: dict[str, float] = {}
    reason: str = ""
    #: the environment it serves and the change record that put it there (the driver's)
    env: str = ""
    change: str = ""
    #: colocated | separate, and why (deploy.placement, or what auto measured)
    placement: str = ""
    placement_reason: str = ""
    route_prefix: str = ""
    shadows: dict[str, float] = {}
    routing_generation: int = 0


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def check_port(deploy: DeployConfig) -> None:
    if not port_is_free(deploy.host, deploy.port):
        raise PortInUseError(f"port {deploy.port} on {deploy.host} is in use by another "
                             "process; stop it or set deploy.port to a free port")


def serve_is_running() -> bool:
    from ray import serve

    # serve.status() answers with an empty status (no proxies) when Serve is not started.
    return bool(serve.status().proxies)


def ensure_serve(deploy: DeployConfig) -> None:
    """Start Ray Serve on the configured host and port, unless it already runs."""
    from ray import serve

    if serve_is_running():
        return
    check_port(deploy)
    serve.start(http_options={"host": deploy.host, "port": deploy.port},
                logging_config={"log_level": "WARNING"})


def endpoint_url(deploy: DeployConfig) -> str:
    host = "127.0.0.1" if deploy.host in ("0.0.0.0", "::") else deploy.host  # noqa: S104
    return f"http://{host}:{deploy.port}{deploy.route_prefix or '/' + deploy.name}/invocations"


def _settings(deploy: DeployConfig, tracking_uri: str, capture_root: Path | None
              ) -> dict[str, Any]:
    """The serving settings every replica gets (a change restarts the replicas)."""
    from raymlops.tenancy import active_workspace

    return {"tracking_uri": tracking_uri, "mlflow_workspace": active_workspace(),
            "capture_root": str(capture_root) if capture_root and deploy.capture else None,
            "capture": {"max_rows": deploy.capture_max_rows,
                        "max_age_s": deploy.capture_flush_s},
            "batching": deploy.batching.model_dump(), "routing": deploy.routing.model_dump(),
            "max_body_bytes": deploy.max_body_bytes, "prefix": deploy.route_prefix}


def _resources(deploy: DeployConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """(each serving replica's options, the separate shape's ingress options)."""
    autoscaling = None
    if deploy.autoscaling is not None:
        autoscaling = deploy.autoscaling.model_dump()
    replica = {"num_cpus": deploy.cpus_per_replica, "num_gpus": deploy.gpus_per_replica,
               "replicas": deploy.replicas, "autoscaling": autoscaling,
               "max_ongoing_requests": deploy.max_ongoing_requests}
    ingress = {**replica, "num_cpus": deploy.router_cpus, "num_gpus": 0.0}
    return replica, ingress


def deploy(deploy: DeployConfig, *, versions: dict[str, str], weights: dict[str, float],
           tracking_uri: str, capture_root: Path | None,
           shadows: dict[str, float] | None = None, timeout_s: float = 180.0) -> DeployResult:
    """Serve ``versions`` (version -> model URI) with ``weights`` (version -> percent of
    primary traffic) and ``shadows`` (version -> percent of requests mirrored)."""
    from raymlops.serving import app, control, placement, routing

    ensure_serve(deploy)
    actor = control.get_or_create(deploy.name)
    previous = current_routing(deploy.name)
    try:
        state = routing.plan(deploy.name, versions, weights, shadows, previous=previous)
    except ValueError as exc:
        raise DeploymentError(f"cannot route {deploy.name}: {exc}") from None
    if previous is not None and (previous.versions, previous.weights, previous.shadows) == (
            state.versions, state.weights, state.shadows):
        state = previous  # the same split: nothing for the replicas to take
    sizes = {v: placement.artifact_bytes(uri, tracking_uri) for v, uri in state.versions.items()}
    own = {v: placement.version_resources(uri, tracking_uri)
           for v, uri in state.versions.items()}
    shape, shape_reason = placement.decide(deploy, sizes, own)
    prefix, prefix_reason = app.choose_prefix(deploy.name, deploy.standard_paths,
                                              app.deployed_configs(), own=deploy.route_prefix)
    replica, ingress = _resources(deploy)
    config = app.application_config(
        app=deploy.name, placement=shape, routing=state.to_dict(),
        settings=_settings(deploy, tracking_uri, capture_root), replica=replica,
        ingress=ingress, route_prefix=prefix, access_log=deploy.access_log,
        version_replica={v: r for v, r in own.items() if r} if shape == "separate" else None)
    import ray

    # the fast path first: running replicas load and route by it within a poll
    held = int(ray.get(actor.set_routing.remote(state.to_dict()), timeout=30))
    if held != state.generation and state is not previous:
        raise DeploymentError(f"the control actor of {deploy.name} holds a newer split "
                              f"(generation {held}) than this deploy's ({state.generation}); "
                              "another deploy ran at the same time: retry")
    try:
        app.apply(config, host=deploy.host, port=deploy.port)
    except Exception as exc:
        if previous is not None and state is not previous:
            # the replicas may already route by the new split: put the old one back, as a
            # newer generation (a replica never takes an older one)
            import dataclasses

            restored = dataclasses.replace(previous, generation=state.generation + 1)
            with contextlib.suppress(Exception):
                ray.get(actor.set_routing.remote(restored.to_dict()), timeout=30)
                log.warning("deploy: %s failed to apply; its replicas route by the previous "
                            "split %s again", deploy.name, previous.weights)
        raise DeploymentError(f"Ray Serve could not deploy {deploy.name!r}: "
                              f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                              ) from exc
    url = endpoint_url(deploy)
    wait_running(deploy.name, config, timeout_s)
    wait_routed(deploy.name, state.generation, timeout_s)
    wait_healthy(url.rsplit("/", 1)[0] + "/health", timeout_s)
    version = app.code_version(config)
    reason = rollout_reason(previous.weights if previous else {}, state.weights,
                            state.shadows)
    log.info("deploy: %s serves %s at %s (code version %s); %s; placement: %s; route: %s",
             deploy.name, state.weights, url, version[:12], reason, shape_reason,
             prefix_reason)
    return DeployResult(app=deploy.name, endpoint=url, weights=state.weights,
                        model_uris=dict(state.versions), since=datetime.now(UTC).isoformat(),
                        deploy_version=version,
                        previous_weights=previous.weights if previous else {}, reason=reason,
                        placement=shape, placement_reason=shape_reason, route_prefix=prefix,
                        shadows=state.shadows, routing_generation=state.generation)


def current_routing(app_name: str) -> Any:
    """The routing state ``app_name`` routes by now (control actor, else its config)."""
    import ray

    from raymlops.serving import app, control
    from raymlops.serving.routing import RoutingState

    try:
        raw = ray.get(control.lookup(app_name).routing.remote(), timeout=30)
    except ValueError:  # no control actor: nothing served under this name yet
        raw = None
    if raw is None:
        config = app.deployed_configs().get(app_name) or {}
        deployments = config.get("deployments") or [{}]
        raw = (deployments[0].get("user_config") or {}).get("routing")
    return RoutingState.from_dict(raw) if raw else None


def wait_routed(name: str, generation: int, timeout_s: float) -> None:
    """Until every running replica of ``name`` routes by ``generation`` (or newer)."""
    import ray
    from ray import serve

    from raymlops.serving import control

    actor = control.lookup(name)
    deadline = time.monotonic() + timeout_s
    while True:
        routed = ray.get(actor.routed_by.remote(generation, [name]), timeout=30)
        expected = control.running_replicas(name, [name])
        if expected and len(routed) >= expected:
            return
        failed = ray.get(actor.failed.remote(generation), timeout=30)
        if failed:
            replica, message = sorted(failed.items())[0]
            raise DeploymentError(f"{len(failed)} replica(s) of {name} could not take the new "
                                  f"split; {replica}: {message}")
        status = serve.status().applications.get(name)
        if not expected and status is not None and str(status.status).endswith("RUNNING"):
            return  # scaled to zero (autoscaling min_replicas 0): the next replica starts
                    # with the newest split
        if time.monotonic() > deadline:
            raise DeploymentError(f"{len(routed)} of {expected} replicas of {name} took the "
                                  f"new routing within {timeout_s:.0f}s")
        time.sleep(0.05)


def wait_running(name: str, config: dict[str, Any], timeout_s: float) -> None:
    """Until the application runs the config just applied (a redeploy's old replicas
    would answer the health check too)."""
    from ray import serve

    from raymlops.serving import app

    deadline = time.monotonic() + timeout_s
    status = "not deployed"
    while time.monotonic() < deadline:
        current = serve.status().applications.get(name)
        status = str(current.status) if current is not None else "not deployed"
        if current is not None and status.endswith("DEPLOY_FAILED"):
            raise DeploymentError(f"Ray Serve could not deploy {name!r}: "
                                  f"{str(current.message).splitlines()[0]}")
        if status.endswith("RUNNING") and app.deployed_configs().get(name, {}).get(
                "args") == config["args"]:
            return
        time.sleep(0.25)
    raise DeploymentError(f"{name} did not reach RUNNING within {timeout_s:.0f}s ({status}); "
                          "see the Ray Serve logs under /tmp/ray/session_latest/logs/serve")


def live_state(app: str) -> dict[str, Any]:
    """The running application's weights, shadows and code version, or {} when none runs."""
    from ray import serve

    from raymlops.serving.app import code_version, deployed_configs

    status = serve.status().applications.get(app)
    if status is None or not str(status.status).endswith("RUNNING"):
        return {}
    routing = current_routing(app)
    state: dict[str, Any] = {"weights": dict(routing.weights) if routing else {},
                             "shadows": dict(routing.shadows) if routing else {}}
    config = deployed_configs().get(app)
    if config:
        state["deploy_version"] = code_version(config)
    return state


def still_serving(result: DeployResult) -> bool:
    """Whether the recorded deployment is the one running now (a resume can reuse it)."""
    if not serve_is_running():
        return False
    state = live_state(result.app)
    return bool(state) and state.get("deploy_version") == result.deploy_version and \
        state.get("weights") == result.weights and state.get("shadows") == result.shadows


def wait_healthy(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            answer = requests.get(url, timeout=5)
            if answer.status_code == 200:
                return
            last = f"HTTP {answer.status_code}"
        except requests.RequestException as exc:
            last = type(exc).__name__
        time.sleep(0.25)
    raise DeploymentError(f"{url} did not become healthy within {timeout_s:.0f}s ({last}); "
                          "see the Ray Serve logs under /tmp/ray/session_latest/logs/serve")


def live_weights(app: str) -> dict[str, float]:
    """The traffic weights of a running router application, or {} if none runs."""
    return dict(live_state(app).get("weights", {}))


def rollout_reason(previous: dict[str, float], weights: dict[str, float],
                   shadows: dict[str, float] | None = None) -> str:
    """Why the versions get the traffic they get (logged and written to lineage)."""
    described = ", ".join(f"version {v} {w:g}%" for v, w in sorted(weights.items()))
    if shadows:
        described += "; shadows " + ", ".join(f"version {v} mirrors {s:g}%"
                                              for v, s in sorted(shadows.items()))
    if not previous:
        return f"no version of this model is serving: {described}"
    if previous == weights:
        return f"the same split is serving ({described}): deployed in place"
    return (f"{described} replaces {previous} in one step (a rollout controller that "
            "steps the weights comes with progressive delivery)")


def flush_capture(app: str, versions: list[str] | None = None, timeout_s: float = 30.0) -> int:
    """Every replica of ``app`` writes its buffered capture (every version it holds);
    returns the rows they have written in all."""
    from raymlops.serving.app import deployed_configs
    from raymlops.serving.control import flush_all
    from raymlops.serving.server import version_deployment

    config = deployed_configs().get(app) or {}
    deployments = [app]
    if (config.get("args") or {}).get("placement") == "separate":
        deployments = [version_deployment(app, v) for v in config["args"]["versions"]]
    return flush_all(app, deployments, timeout_s=timeout_s)
