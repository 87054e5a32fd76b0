"""Deploy: put model versions behind the router on Ray Serve, with explicit traffic weights.

Idempotent: deploying the same versions and weights again leaves the running
application as it is. The HTTP port is checked first, so a port taken by another
process gives a one-line error instead of a proxy that never starts.
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
           timeout_s: float = 180.0) -> DeployResult:
    """Deploy ``versions`` (version -> model URI) with ``weights`` (version -> percent)."""
    from ray import serve

    from raymlops.serving import deployments

    # Typed as Any: @serve.deployment turns the classes into Deployment objects.
    model_version: Any = deployments.ModelVersion
    router_cls: Any = deployments.Router

    ensure_serve(deploy)
    variants = {}
    for version, uri in sorted(versions.items()):
        capture = str(capture_root / deploy.name / f"v{version}") if capture_root else None
        variants[version] = model_version.options(
            name=f"{deploy.name}-v{version}", num_replicas=deploy.replicas,
            ray_actor_options={"num_cpus": deploy.cpus_per_replica},
        ).bind(deploy.name, version, uri, tracking_uri, capture if deploy.capture else None)
    router = router_cls.options(
        name=f"{deploy.name}-router", num_replicas=1,
        ray_actor_options={"num_cpus": deploy.router_cpus},
        user_config={"weights": weights},
    ).bind(deploy.name, variants, input_columns)
    try:
        serve.run(router, name=deploy.name, route_prefix=f"/{deploy.name}", blocking=False)
    except Exception as exc:
        raise DeploymentError(f"Ray Serve could not deploy {deploy.name!r}: "
                              f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                              ) from exc
    url = endpoint_url(deploy)
    wait_healthy(url.rsplit("/", 1)[0] + "/health", timeout_s)
    log.info("deploy: %s serves versions %s with weights %s at %s", deploy.name,
             sorted(versions), weights, url)
    return DeployResult(app=deploy.name, endpoint=url, weights=weights, model_uris=versions,
                        since=datetime.now(UTC).isoformat())


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
    from ray import serve

    status = serve.status().applications.get(app)
    if status is None or str(status.status) not in ("RUNNING", "ApplicationStatus.RUNNING"):
        return {}
    handle = serve.get_deployment_handle(f"{app}-router", app_name=app)
    return dict(handle.weights.remote().result(timeout_s=30))


def rollout_reason(previous: dict[str, float], version: str) -> str:
    """Why the new version gets the traffic it gets (logged and written to lineage)."""
    if not previous:
        return f"no version of this model is serving: version {version} takes 100% of traffic"
    if set(previous) == {version}:
        return f"version {version} already serves 100%: redeployed in place"
    return (f"version {version} replaces {previous} at 100% in one step; progressive "
            "strategies (canary, blue-green, shadow, A/B) are not configurable yet")


def flush_capture(app: str, versions: list[str]) -> None:
    from ray import serve

    for version in versions:
        handle = serve.get_deployment_handle(f"{app}-v{version}", app_name=app)
        handle.flush.remote().result(timeout_s=30)
