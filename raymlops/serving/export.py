"""The live serving state as declarative config: a Serve config file for ``serve deploy``
and the ``serveConfigV2`` of a KubeRay RayService (``raymlops export-serve``).

raymlops already deploys declaratively (``serving.app``), so the state is one Serve
application config: the serving settings, batching and replica resources or autoscaling
in its ``args``, and the routing (versions, weights, shadows, stickiness) in its
deployment's ``user_config``. The routing written out is the one replicas route by now:
the control actor's, which a weight change reaches before the ``user_config`` does. The
routing generation is kept, so re-applying the file to a cluster that serves it already
is a no-op for the replicas, and applying it to a fresh one starts from that state.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from raymlops.errors import ConfigError, NotFoundError

API_VERSION = "ray.io/v1"


def serve_config(app: str, *, host: str | None = None, port: int | None = None,
                 others: Any = None) -> dict[str, Any]:
    """``{"http_options": ..., "applications": [app's config, ...]}`` as Serve runs it
    now, each application with the routing its replicas use. ``serve deploy`` replaces
    the cluster's whole Serve state, so ``others`` (a predicate on application names)
    adds the other live applications it accepts: a file for the whole cluster."""
    from ray.serve.schema import ServeDeploySchema

    from raymlops.serving import app as serving_app
    from raymlops.serving.deploy import current_routing

    details = serving_app._client().get_serve_details()
    deployed = serving_app.deployed_configs()
    if app not in deployed:
        live = ", ".join(sorted(deployed)) or "none"
        raise NotFoundError(f"no Serve application {app!r} on this Ray cluster (live: {live});"
                            " pass --address of the cluster that serves it, or --name")
    names = [app, *(n for n in sorted(deployed) if n != app and others and others(n))]
    http = details.get("http_options") or {}
    location = details.get("proxy_location") or "EveryNode"  # an enum in get_serve_details
    out = {"proxy_location": str(getattr(location, "value", location)),
           "http_options": {"host": host or http.get("host", "127.0.0.1"),
                            "port": int(port or http.get("port", 8000))},
           "applications": [_live(name, deployed[name], current_routing) for name in names]}
    ServeDeploySchema.model_validate(out)  # what `serve deploy` will accept
    return out


def _live(app: str, deployed: dict[str, Any], current_routing: Any) -> dict[str, Any]:
    config = copy.deepcopy(deployed)
    routing = current_routing(app)
    if routing is not None:
        deployments = config.get("deployments") or [{"name": app}]
        deployments[0] = {**deployments[0], "user_config": {"routing": routing.to_dict()}}
        config["deployments"] = deployments
    return config


def rayservice(config: dict[str, Any], *, name: str, existing: Path | None = None,
               cluster: Path | None = None) -> dict[str, Any]:
    """A RayService whose ``serveConfigV2`` is ``config``: an existing RayService manifest
    with only that field replaced (what a GitOps repository holds), or a new one around
    the ``spec`` of a RayCluster manifest."""
    # KubeRay's serve Service targets port 8000 on every pod
    text = yaml.safe_dump({"proxy_location": config["proxy_location"],
                           "http_options": {"host": "0.0.0.0", "port": 8000},  # noqa: S104 - a pod
                           "applications": config["applications"]}, sort_keys=False)
    if existing is not None and existing.exists():
        manifest = _load(existing, "RayService")
        manifest["spec"]["serveConfigV2"] = text
        return manifest
    if cluster is None:
        raise ConfigError("--rayservice: the file does not exist yet; give --cluster with a "
                          "RayCluster manifest (e.g. cluster/kuberay/raycluster.yaml) for "
                          "its rayClusterConfig")
    spec = _load(cluster, "RayCluster")["spec"]
    return {"apiVersion": API_VERSION, "kind": "RayService", "metadata": {"name": name},
            "spec": {"serveConfigV2": text, "rayClusterConfig": spec}}


def _load(path: Path, kind: str) -> dict[str, Any]:
    try:
        manifest = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read a {kind} manifest: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != kind or \
            not isinstance(manifest.get("spec"), dict):
        raise ConfigError(f"{path}: not a {kind} manifest (kind: "
                          f"{manifest.get('kind') if isinstance(manifest, dict) else None})")
    if manifest.get("apiVersion") != API_VERSION:
        raise ConfigError(f"{path}: apiVersion {manifest.get('apiVersion')!r}; "
                          f"raymlops writes {API_VERSION}")
    return manifest


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (a RayService's ``serveConfigV2``) as ``|`` blocks, readable
    and diffable in a GitOps repository, rather than one quoted line."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)


def dump(document: dict[str, Any]) -> str:
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False)
