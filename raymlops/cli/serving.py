"""Serving commands: ``serve`` (a registered model in the foreground, as ``mlflow models
serve`` does, on the embedded default or on a cluster)."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import re
import sys
import time
from typing import Any

from raymlops.cli._common import (
    add_common,
    emit,
    joined_cluster,
    overrides,
    owned,
    stores,
    tenant,
)

#: the environment name ``serve`` records in lineage: serving outside the pipeline
SERVE_ENV = "serve"


def add_commands(sub: Any) -> None:
    serve = sub.add_parser("serve", help="serve a registered model in the foreground until "
                           "Ctrl-C (MLflow scoring + Open Inference Protocol v2)")
    add_common(serve)
    serve.add_argument("model", help="MODEL, MODEL@ALIAS or MODEL/VERSION (a bare name: the "
                       "champion alias, else the latest version)")
    serve.add_argument("--port", type=int, default=None, help="HTTP port (default 8000)")
    serve.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    serve.add_argument("--address", default=None, help="Ray cluster address (default: local)")
    serve.add_argument("--config", default=None, help="take tracking/lineage URLs from it")
    serve.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a deploy.* setting of the version's recorded config")
    serve.add_argument("--name", default=None, help="the Serve application (and route) name; "
                       "default: the model's name")
    serve.add_argument("--as", dest="actor", default=None, help="who serves (audit trail)")
    serve.set_defaults(handler=cmd_serve)

    export = sub.add_parser("export-serve", help="the live serving state as a Serve config "
                            "file (for `serve deploy`) and a RayService's serveConfigV2")
    add_common(export)
    export.add_argument("model", help="the served model (its Serve application name)")
    export.add_argument("--all", action="store_true",
                        help="every other live application too (those the caller's project "
                        "may see): `serve deploy` replaces the whole cluster's Serve state, "
                        "deleting applications the file leaves out")
    export.add_argument("--name", default=None, help="the Serve application, when it is not "
                        "named after the model")
    export.add_argument("--address", default=None, help="the Ray cluster that serves it "
                        "(default: RAY_ADDRESS or a local `ray start`)")
    export.add_argument("--output", "-o", default=None,
                        help="write the Serve config here (default: stdout)")
    export.add_argument("--host", default=None, help="http_options.host to write (default: "
                        "the live one)")
    export.add_argument("--port", type=int, default=None, help="http_options.port to write "
                        "(default: the live one)")
    export.add_argument("--rayservice", default=None, metavar="FILE",
                        help="also write a RayService: replaces serveConfigV2 in FILE if it "
                        "exists, else makes one around --cluster's spec")
    export.add_argument("--cluster", default=None, metavar="RAYCLUSTER",
                        help="a RayCluster manifest for a new RayService's rayClusterConfig")
    export.set_defaults(handler=cmd_export_serve)


def app_for(model: str) -> str:
    """A Serve application name (and route) for a registered model's name."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", model).lstrip("-_.") or "model"


def cmd_serve(args: argparse.Namespace) -> int:
    import mlflow

    from raymlops._internal.ray_runtime import init_ray, shutdown_ray
    from raymlops.cli.quality import recorded_config
    from raymlops.errors import ConfigError
    from raymlops.pipeline.services import Services
    from raymlops.registry.mlflow_registry import resolve
    from raymlops.serving.deploy import deploy

    ws, store = stores(args)
    name, version = resolve(owned(args, args.model, "serve"))
    config = recorded_config(name, version)
    app = app_for(args.name or name)
    changes: dict[str, Any] = {"name": app}
    if args.port is not None:
        changes["port"] = args.port
    if args.host is not None:
        changes["host"] = args.host
    for key, value in overrides(args.set).items():
        if not key.startswith("deploy."):
            raise ConfigError(f"--set {key}: serve takes deploy.* settings only")
        changes[key.removeprefix("deploy.")] = value
    settings = _serving_settings(config, changes, renamed=args.name is not None)
    tenant(args).own(settings.name, "serve as")
    actor = args.actor or getpass.getuser()
    started = init_ray(args.address, ingress=settings.ingress)
    run = f"serve-{time.strftime('%Y%m%d-%H%M%S')}"
    services = Services.open(config, ws)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            result = deploy(settings, versions={version: f"models:/{name}/{version}"},
                            weights={version: 100.0}, tracking_uri=mlflow.get_tracking_uri(),
                            capture_root=ws.capture_dir)
        store.add_event(run, "serve", "model_deployed", {
            "endpoint": result.endpoint, "weights": result.weights, "reason": result.reason,
            "since": result.since, "env": SERVE_ENV, "app": result.app, "change": "",
            "deploy_version": result.deploy_version}, model_name=name, model_version=version)
        services.record(actor=actor, action="deployed", obj=f"app:{result.app}",
                        reason=f"raymlops serve {args.model}: {result.reason}",
                        payload={"endpoint": result.endpoint, "version": version,
                                 "placement": result.placement})
        emit(args, result.model_dump(), _serving_text(result, settings, name, version))
        print("press Ctrl-C to stop", file=sys.stderr, flush=True)
        import threading

        threading.Event().wait()
    finally:
        reason = "raymlops serve stopped (Ctrl-C or SIGTERM)"
        with contextlib.suppress(Exception):
            from ray import serve

            serve.delete(app)
        store.add_event(run, "serve", "serving_stopped", {"env": SERVE_ENV,
                                                          "app": app,
                                                          "reason": reason}, model_name=name)
        services.record(actor=actor, action="serving_stopped", obj=f"app:{app}",
                        reason=reason, payload={"model": name, "env": SERVE_ENV})
        if started:
            shutdown_ray()
    return 0


def _serving_settings(config: Any, changes: dict[str, Any], *, renamed: bool) -> Any:
    """The recorded config's deploy section with ``changes``, validated as a whole config:
    a tenant's name, route and root-route rules apply to what --name and --set change."""
    from raymlops.config import config_snapshot, load_config

    raw = config_snapshot(config)
    deploy = {**raw["deploy"], **changes}
    if renamed and "route_prefix" not in changes:
        deploy.pop("route_prefix", None)  # a new name answers under its own route
    return load_config({**raw, "deploy": deploy}).deploy


def _serving_text(result: Any, settings: Any, name: str, version: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(result.endpoint)
    base = f"{parts.scheme}://{parts.netloc}"
    path = "" if result.route_prefix == "/" else result.route_prefix
    own = settings.route_prefix or f"/{result.app}"
    return "\n".join([
        f"raymlops: serving {name} version {version} ({result.placement}; "
        f"{result.placement_reason})",
        f"  MLflow scoring   POST {base}{path}/invocations",
        f"  Open Inference   POST {base}{path}/v2/models/{result.app}/infer",
        f"  OpenAPI          GET  {base}{own}/openapi.json"])


def cmd_export_serve(args: argparse.Namespace) -> int:
    from pathlib import Path

    from raymlops.serving import export

    app = app_for(owned(args, args.name or args.model, "export the serving state of"))
    with joined_cluster(args, "that serves " + app):
        caller = tenant(args)
        config = export.serve_config(app, host=args.host, port=args.port,
                                     others=caller.sees if args.all else None)
        from ray import serve

        left_out = set(serve.status().applications) - {a["name"] for a in
                                                         config["applications"]}
    text = export.dump(config)
    if left_out:
        # `serve deploy` (and a RayService) replace the whole Serve state of a cluster
        seen = sorted(a for a in left_out if caller.sees(a))
        whose = " and ".join(filter(None, [
            f"{len(seen)} live application(s) ({', '.join(seen)})" if seen else "",
            "other projects' applications" if len(seen) < len(left_out) else ""]))
        warning = (f"this file leaves out {whose}: `serve deploy` of it, or a RayService "
                   "made from it, deletes them; export with --all from the platform's "
                   "view (no --project) for the cluster's whole state")
        print(f"raymlops: warning: {warning}", file=sys.stderr)
        text = f"# raymlops export-serve: {warning}\n{text}"
    written = []
    if args.output:
        Path(args.output).write_text(text)
        written.append(args.output)
    if args.rayservice:
        manifest = export.rayservice(config, name=app, existing=Path(args.rayservice),
                                     cluster=Path(args.cluster) if args.cluster else None)
        Path(args.rayservice).write_text(export.dump(manifest))
        written.append(args.rayservice)
    routing = config["applications"][0]["deployments"][0].get("user_config", {}).get(
        "routing", {})
    if args.json:
        emit(args, {"app": app, "config": config, "written": written}, "")
    elif args.output or args.rayservice:
        print(f"raymlops: {app} (weights {routing.get('weights')}, shadows "
              f"{routing.get('shadows') or 'none'}, generation {routing.get('generation')}) "
              f"written to {', '.join(written)}; apply with `serve deploy {args.output}` or "
              "`kubectl apply -f` the RayService")
    else:
        print(text, end="")
    return 0
