"""Deploy: put model versions behind the router on Ray Serve, with explicit traffic weights.

Idempotent: the application is deployed declaratively (``raymlops.serving.app``), so its
code version is a hash of what its replicas run (the model versions and URIs, the
serving settings); deploying the same thing again leaves the running replicas as they
are, and a weights-only change is a ``reconfigure``. The HTTP port is checked first, so
a port taken by another process gives a one-line error instead of a proxy that never
starts.
"""

from __future__ import annotations

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
    return f"http://{host}:{deploy.port}/{deploy.name}/invocations"


def deploy(deploy: DeployConfig, *, versions: dict[str, str], weights: dict[str, float],
           input_columns: list[str], tracking_uri: str, capture_root: Path | None,
           numeric: list[str] | None = None, timeout_s: float = 180.0) -> DeployResult:
    """Deploy ``versions`` (version -> model URI) with ``weights`` (version -> percent)."""
    from raymlops.serving import app, control

    ensure_serve(deploy)
    control.get_or_create(deploy.name)
    previous = live_weights(deploy.name)
    config = app.application_config(
        app=deploy.name, versions=versions, weights=weights, input_columns=input_columns,
        numeric=list(numeric or []), tracking_uri=tracking_uri,
        capture_root=str(capture_root) if capture_root and deploy.capture else None,
        capture={"max_rows": deploy.capture_max_rows, "max_age_s": deploy.capture_flush_s},
        replicas=deploy.replicas, cpus_per_replica=deploy.cpus_per_replica,
        router_cpus=deploy.router_cpus)
    try:
        app.apply(config, host=deploy.host, port=deploy.port)
    except Exception as exc:
        raise DeploymentError(f"Ray Serve could not deploy {deploy.name!r}: "
                              f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                              ) from exc
    url = endpoint_url(deploy)
    wait_running(deploy.name, config, timeout_s)
    wait_healthy(url.rsplit("/", 1)[0] + "/health", timeout_s)
    version = app.code_version(config)
    reason = rollout_reason(previous, weights)
    log.info("deploy: %s serves versions %s with weights %s at %s (code version %s); %s",
             deploy.name, sorted(versions), weights, url, version[:12], reason)
    return DeployResult(app=deploy.name, endpoint=url, weights=weights, model_uris=versions,
                        since=datetime.now(UTC).isoformat(), deploy_version=version,
                        previous_weights=previous, reason=reason)


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
    """The running application's weights and code version, or {} when none runs."""
    from ray import serve

    from raymlops.serving.app import code_version, deployed_configs

    status = serve.status().applications.get(app)
    if status is None or not str(status.status).endswith("RUNNING"):
        return {}
    handle = serve.get_deployment_handle(f"{app}-router", app_name=app)
    state: dict[str, Any] = {"weights": dict(handle.weights.remote().result(timeout_s=30))}
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
        state.get("weights") == result.weights


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


def rollout_reason(previous: dict[str, float], weights: dict[str, float]) -> str:
    """Why the versions get the traffic they get (logged and written to lineage)."""
    described = ", ".join(f"version {v} {w:g}%" for v, w in sorted(weights.items()))
    if not previous:
        return f"no version of this model is serving: {described}"
    if previous == weights:
        return f"the same split is serving ({described}): deployed in place"
    return (f"{described} replaces {previous} in one step; progressive strategies "
            "(canary, blue-green, shadow, A/B) are not configurable yet")


def flush_capture(app: str, versions: list[str], timeout_s: float = 30.0) -> int:
    """Every replica of every version writes its buffered capture; returns rows written."""
    from raymlops.serving.control import flush_all

    return flush_all(app, [f"{app}-v{v}" for v in versions], timeout_s=timeout_s)
