"""What every command shares: common flags, output, overrides, and opening the stores."""

from __future__ import annotations

import argparse
import json
import logging
import sys
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


def stores(args: argparse.Namespace) -> tuple[Workspace, Any]:
    """The workspace and lineage store, with MLflow pointed at the tracking store."""
    from raymlops.config import load_config
    from raymlops.lineage.store import LineageStore

    ws = Workspace.at(args.workdir)
    lineage_url, tracking = ws.lineage_url, ws.mlflow_uri
    if getattr(args, "config", None):
        config = load_config(args.config)
        lineage_url = config.lineage.url or lineage_url
        tracking = config.tracking.uri or tracking
    import mlflow

    mlflow.set_tracking_uri(tracking)
    return ws, LineageStore(lineage_url)
