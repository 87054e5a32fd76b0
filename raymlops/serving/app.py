"""The Serve application, built from a declarative config (``raymlops.serving.app:build_app``).

raymlops deploys through Serve's declarative API, as ``serve deploy`` does, not through
``serve.run``: Ray 2.60 removed ``Deployment.options(version=...)``, and a deployment
made by ``serve.run`` gets a random code version, so every redeploy restarted every
replica. A declarative application's code version is a hash of its import path,
runtime env and ``args``. The args hold the serving settings (and, for the separate
shape, the versions: each is a deployment); the routing state (versions, weights,
shadows) travels in the routing deployment's ``user_config``, so a new split, or a
new co-located version, is a reconfigure and no replica restarts. The same config is
what ``serve deploy`` or a RayService takes (``raymlops export-serve``).
"""

from __future__ import annotations

import logging
from typing import Any

IMPORT_PATH = "raymlops.serving.app:build_app"
ROOT = "/"

log = logging.getLogger(__name__)


def _replica_options(resources: dict[str, Any]) -> dict[str, Any]:
    actor: dict[str, Any] = {"num_cpus": float(resources["num_cpus"])}
    if resources.get("num_gpus"):
        actor["num_gpus"] = float(resources["num_gpus"])
    out: dict[str, Any] = {"ray_actor_options": actor,
                           "max_ongoing_requests": int(resources["max_ongoing_requests"])}
    if resources.get("autoscaling"):
        out["autoscaling_config"] = dict(resources["autoscaling"])
    else:
        out["num_replicas"] = int(resources["replicas"])
    return out


def build_app(args: dict[str, Any]) -> Any:
    """The application for ``args`` (see ``application_config``); called by Serve."""
    from raymlops.serving import server

    settings = args["settings"]
    app = settings["app"]
    model_server: Any = server.ModelServer
    if args["placement"] == "colocated":
        return model_server.options(name=app, **_replica_options(args["replica"])
                                    ).bind(settings)
    version_server: Any = server.VersionServer
    ingress: Any = server.Ingress
    own = args.get("version_replica") or {}  # a version's own resources (a GPU beside CPUs)
    handles = {version: version_server.options(
        name=server.version_deployment(app, version),
        **_replica_options({**args["replica"], **own.get(version, {})})
    ).bind(settings, version, uri) for version, uri in sorted(args["versions"].items())}
    return ingress.options(name=app, **_replica_options(args["ingress"])).bind(settings,
                                                                               handles)


def application_config(*, app: str, placement: str, routing: dict[str, Any],
                       settings: dict[str, Any], replica: dict[str, Any],
                       ingress: dict[str, Any], route_prefix: str,
                       access_log: bool = False,
                       version_replica: dict[str, dict[str, float]] | None = None
                       ) -> dict[str, Any]:
    """One entry of a Serve config's ``applications`` (``ServeApplicationSchema``)."""
    args: dict[str, Any] = {"placement": placement, "settings": {"app": app, **settings},
                            "replica": replica}
    if placement == "separate":
        args["versions"] = dict(sorted(routing["versions"].items()))
        args["ingress"] = ingress
        if version_replica:
            args["version_replica"] = dict(sorted(version_replica.items()))
    # Serve's per-request access log line costs about 4% of a one-row request; the
    # per-version metrics count every request anyway (deploy.access_log turns it on)
    return {"name": app, "route_prefix": route_prefix, "import_path": IMPORT_PATH,
            "args": args, "logging_config": {"enable_access_log": access_log},
            "deployments": [{"name": app, "user_config": {"routing": routing}}]}


def code_version(config: dict[str, Any]) -> str:
    """The code version Serve gives this application's deployments."""
    from ray.serve._private.deploy_utils import get_app_code_version
    from ray.serve.schema import ServeApplicationSchema

    return str(get_app_code_version(ServeApplicationSchema.model_validate(config)))


def _client() -> Any:
    # The Serve controller's client: the API `serve deploy` reaches through the dashboard.
    from ray.serve.context import _get_global_client

    return _get_global_client()


def deployed_configs() -> dict[str, dict[str, Any]]:
    """The declarative config of every application Serve runs from one, by name."""
    details = _client().get_serve_details()
    out = {}
    for name, app in (details.get("applications") or {}).items():
        config = app.get("deployed_app_config")
        if config:
            out[name] = dict(config)
    return out


def root_holder(apps: dict[str, dict[str, Any]]) -> str | None:
    return next((name for name, c in apps.items() if c.get("route_prefix") == ROOT), None)


def choose_prefix(app: str, standard_paths: str, apps: dict[str, dict[str, Any]],
                  own: str | None = None) -> tuple[str, str]:
    """(route prefix, why) for ``app``: the root (the standard paths) or its own prefix
    (``deploy.route_prefix``, default ``/<app>``)."""
    holder = root_holder(apps)
    mine = own or f"/{app}"
    if standard_paths == "never":
        return mine, "deploy.standard_paths is never"
    if standard_paths == "always" or holder in (None, app):
        taken = f"; {holder} moves to /{holder}" if holder not in (None, app) else ""
        return ROOT, f"{app} answers the standard paths (/invocations, /v2/...){taken}"
    return mine, (f"{holder} holds the standard paths; {app} answers under {mine} "
                  "(set deploy.standard_paths: always to take them)")


def apply(config: dict[str, Any], *, host: str, port: int) -> None:
    """Deploy one application declaratively, keeping every other one as it runs.

    A declarative apply replaces the whole set of declarative applications, so the new
    config is the running ones plus this one (replacing an older config of the same
    name). An application that held the root route gives it up to this one when this
    one takes it, and answers under its own prefix (it always does too).
    """
    from ray.serve.schema import ServeDeploySchema

    apps = deployed_configs()
    if config["route_prefix"] == ROOT:
        for name, other in apps.items():
            if name != config["name"] and other.get("route_prefix") == ROOT:
                own = ((other.get("args") or {}).get("settings") or {}).get("prefix")
                apps[name] = {**other, "route_prefix": own or f"/{name}"}
                log.info("serve: %s gives the root route to %s and answers under %s", name,
                         config["name"], own or f"/{name}")
    apps[config["name"]] = config
    schema = ServeDeploySchema.model_validate({
        "http_options": {"host": host, "port": port},
        "applications": [apps[name] for name in sorted(apps)]})
    _client().deploy_apps(schema)


def delete(app: str) -> None:
    """Remove one application (and only that one)."""
    from ray import serve

    serve.delete(app)
