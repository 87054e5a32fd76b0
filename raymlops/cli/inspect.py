"""Commands that answer questions from the lineage store: ``lineage`` and ``status``."""

from __future__ import annotations

import argparse
from typing import Any

from raymlops.cli._common import add_common, emit, stores

_DETAIL = {
    "dataset_ingested": lambda p: f"{p.get('rows')} rows from {p.get('source')}",
    "retrain_data_checked": lambda p: f"retrain of {p.get('retrain_of')}: digest "
                                      f"{'matches' if p.get('same') else 'differs'}",
    "data_validated": lambda p: f"{p.get('rows_accepted')} accepted, "
                                f"{p.get('rows_quarantined')} quarantined",
    "features_fitted": lambda p: f"{p.get('features')} features, split {p.get('rows')}",
    "model_trained": lambda p: f"MLflow run {p.get('mlflow_run_id')}",
    "gate_verdict": lambda p: f"{'PASS' if p.get('passed') else 'REJECT'}: "
                              f"{'; '.join(p.get('reasons', []))}",
    "model_registered": lambda p: f"registered from {p.get('model_uri')}",
    "model_deployed": lambda p: f"{p.get('weights')} at {p.get('endpoint')}",
    "drift_computed": lambda p: f"{p.get('verdict')} {p.get('drifted_columns')}",
}


def add_commands(sub: Any) -> None:
    lineage = sub.add_parser("lineage", help="the chain behind a model version")
    add_common(lineage)
    lineage.add_argument("model", help="MODEL, MODEL@ALIAS or MODEL/VERSION")
    lineage.add_argument("--config", default=None, help="take tracking/lineage URLs from it")
    lineage.set_defaults(handler=cmd_lineage)

    status = sub.add_parser("status", help="what is deployed, with what split, since when")
    add_common(status)
    status.add_argument("--config", default=None, help="take the lineage URL from it")
    status.set_defaults(handler=cmd_status)


def cmd_lineage(args: argparse.Namespace) -> int:
    from raymlops.lineage.query import chain_for
    from raymlops.registry.mlflow_registry import resolve

    _, store = stores(args)
    name, version = resolve(args.model)
    chain = chain_for(store, name, version)
    lines = [f"{name} version {version} <- run {chain['run_id']} <- dataset "
             f"{chain['dataset_digest']}"]
    for step in chain["steps"]:
        detail = _DETAIL.get(step["kind"], lambda p: "")(step["payload"])
        lines.append(f"  {step['at'][:19]}  {step['kind']:<20} {detail}")
    emit(args, chain, "\n".join(lines))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    import requests

    from raymlops.lineage.query import deployments

    _, store = stores(args)
    rows = deployments(store)
    for row in rows:
        health = str(row["endpoint"] or "").rsplit("/", 1)[0] + "/health"
        try:
            row["live"] = requests.get(health, timeout=2).status_code == 200
        except requests.RequestException:
            row["live"] = False
    text = "\n".join(
        f"{r['model']}: version {r['version']} weights {r['weights']} since {r['since']} "
        f"at {r['endpoint']} ({'live' if r['live'] else 'not reachable now'})" for r in rows
    ) or "nothing deployed yet"
    emit(args, rows, text)
    return 0
