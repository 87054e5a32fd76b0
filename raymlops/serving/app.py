"""The Serve application, built from a declarative config (``raymlops.serving.app:build_app``).

raymlops deploys through Serve's declarative API, as ``serve deploy`` does, not through
``serve.run``: Ray 2.60 removed ``Deployment.options(version=...)``, and a deployment
made by ``serve.run`` gets a random code version, so every redeploy restarted every
replica. A declarative application's code version is a hash of its import path,
runtime env and ``args``; the args name the model versions, their URIs and the serving
settings, so deploying the same thing again leaves the replicas as they are, while the
traffic weights travel in the router's ``user_config`` and change with a reconfigure.
The same config is what ``serve deploy`` or a RayService takes.
"""

from __future__ import annotations

from typing import Any

IMPORT_PATH = "raymlops.serving.app:build_app"


def build_app(args: dict[str, Any]) -> Any:
    """The application for ``args`` (see ``application_config``); called by Serve."""
    from raymlops.names import capture_dir
    from raymlops.serving import deployments

    model_version: Any = deployments.ModelVersion
    router_cls: Any = deployments.Router
    app = args["app"]
    capture = args.get("capture") or {}
    root = args.get("capture_root")
    variants = {}
    for version, uri in sorted(args["versions"].items()):
        from pathlib import Path

        folder = str(capture_dir(Path(root), app, version)) if root else None
        variants[version] = model_version.options(
            name=f"{app}-v{version}", num_replicas=int(args.get("replicas", 1)),
            ray_actor_options={"num_cpus": float(args["cpus_per_replica"])},
        ).bind(app, version, uri, args["tracking_uri"], folder, capture, app)
    return router_cls.options(
        name=f"{app}-router", num_replicas=1,
        ray_actor_options={"num_cpus": float(args["router_cpus"])},
    ).bind(app, variants, list(args["input_columns"]), list(args.get("numeric", [])))


def application_config(*, app: str, versions: dict[str, str], weights: dict[str, float],
                       input_columns: list[str], numeric: list[str], tracking_uri: str,
                       capture_root: str | None,
                       capture: dict[str, float], replicas: int, cpus_per_replica: float,
                       router_cpus: float) -> dict[str, Any]:
    """One entry of a Serve config's ``applications`` (``ServeApplicationSchema``)."""
    return {
        "name": app, "route_prefix": f"/{app}", "import_path": IMPORT_PATH,
        "args": {"app": app, "versions": dict(sorted(versions.items())),
                 "input_columns": list(input_columns), "numeric": list(numeric),
                 "tracking_uri": tracking_uri,
                 "capture_root": capture_root, "capture": dict(capture),
                 "replicas": replicas, "cpus_per_replica": cpus_per_replica,
                 "router_cpus": router_cpus},
        "deployments": [{"name": f"{app}-router",
                         "user_config": {"weights": {str(k): float(v)
                                                     for k, v in weights.items()}}}],
    }


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


def apply(config: dict[str, Any], *, host: str, port: int) -> None:
    """Deploy one application declaratively, keeping every other one as it runs.

    A declarative apply replaces the whole set of declarative applications, so the new
    config is the running ones plus this one (replacing an older config of the same name).
    """
    from ray.serve.schema import ServeDeploySchema

    apps = deployed_configs()
    apps[config["name"]] = config
    schema = ServeDeploySchema.model_validate({
        "http_options": {"host": host, "port": port},
        "applications": [apps[name] for name in sorted(apps)]})
    _client().deploy_apps(schema)


def delete(app: str) -> None:
    """Remove one application (and only that one)."""
    from ray import serve

    serve.delete(app)
