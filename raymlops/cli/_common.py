"""What every command shares: common flags, output, overrides, and opening the stores."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

from raymlops.workspace import Workspace


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    logging.getLogger("raymlops").setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("mlflow", "alembic", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", default=None,
                        help="state directory (default .raymlops/, or $RAYMLOPS_WORKDIR)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--project", default=None,
                        help="act as this project (tenant): only its models, routes and "
                        "lineage (default $RAYMLOPS_PROJECT, else a --config's project "
                        "with tenancy, else every project)")


def overrides(pairs: list[str]) -> dict[str, Any]:
    import yaml

    from raymlops.errors import ConfigError

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE, e.g. deploy.port=8123")
        out[key.strip()] = yaml.safe_load(value)
    return out


def emit(args: argparse.Namespace, payload: Any, text: str) -> None:
    if args.json:
        print(json.dumps(payload, indent=2, default=str))
    else:
        print(text)


def tenant(args: argparse.Namespace, config: Any = None) -> Any:
    """Who the command acts for: --project, $RAYMLOPS_PROJECT, or the config's tenant."""
    import os

    from raymlops.errors import PermissionDeniedError
    from raymlops.tenancy import Tenant

    declared = getattr(args, "project", None) or os.environ.get("RAYMLOPS_PROJECT") or None
    if config is None:
        config = _config_of(args)
    from_config = Tenant.of(config).project if config is not None else None
    if declared and from_config and declared != from_config:
        raise PermissionDeniedError(f"--project {declared!r} cannot act with the config of "
                                    f"project {from_config!r}")
    return Tenant(declared or from_config)


def _config_of(args: argparse.Namespace) -> Any:
    """The command's --config, loaded once however many helpers ask for it."""
    if getattr(args, "config", None) and getattr(args, "_loaded_config", None) is None:
        from raymlops.config import load_config

        args._loaded_config = load_config(args.config)
    return getattr(args, "_loaded_config", None)


def owned(args: argparse.Namespace, spec: str, action: str) -> str:
    """``MODEL[@ALIAS|/VERSION]`` with MODEL qualified for the caller's project, or
    PermissionDeniedError when it is another project's."""
    import re

    name, rest = re.match(r"^([^@/]*)(.*)$", spec).groups()  # type: ignore[union-attr]
    return tenant(args).own(name, action) + rest


def stores(args: argparse.Namespace) -> tuple[Workspace, Any]:
    """The workspace and lineage store, with MLflow pointed at the tracking store."""
    from raymlops.lineage.store import LineageStore

    ws = Workspace.at(args.workdir)
    lineage_url, tracking = ws.lineage_url, ws.mlflow_uri
    config = _config_of(args)
    if config is not None:
        lineage_url = config.lineage.url or lineage_url
        tracking = config.tracking.uri or tracking
    import mlflow

    from raymlops.tenancy import use_workspace

    mlflow.set_tracking_uri(tracking)
    use_workspace(config)
    return ws, LineageStore(lineage_url)


@contextlib.contextmanager
def joined_cluster(args: argparse.Namespace, what: str) -> Iterator[None]:
    """Join the running Ray cluster (``--address``, ``$RAY_ADDRESS`` or this process's)
    for a command that only reads or writes its state; never start one. ``what`` ends
    the error: "no Ray cluster: pass --address ... of the cluster {what}". Leaves the
    cluster running, disconnecting only if this joined it."""
    import os

    from raymlops._internal.ray_runtime import _would_start, init_ray, ray_running, shutdown_ray
    from raymlops.errors import NotFoundError

    target = getattr(args, "address", None) or os.environ.get("RAY_ADDRESS")
    if not ray_running() and _would_start(target):
        raise NotFoundError("no Ray cluster: pass --address (or set RAY_ADDRESS) of the "
                            f"cluster {what}")
    joined = init_ray(target)
    try:
        yield
    finally:
        if joined:
            shutdown_ray()  # disconnects: a joined cluster keeps running
