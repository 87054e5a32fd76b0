"""Commands that answer questions from the lineage store and the registry: ``lineage``,
``serving-at``, ``status`` and ``models``."""

from __future__ import annotations

import argparse
from typing import Any

from raymlops.cli._common import add_common, emit, owned, stores, tenant

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
    "model_registered": lambda p: f"registered from {p.get('model_uri')} by {p.get('author')} "
                                  f"(commit {str(p.get('commit'))[:12]}, config "
                                  f"{str(p.get('config_hash'))[:19]})",
    "model_deployed": lambda p: f"{p.get('weights')} at {p.get('endpoint')}",
    "drift_computed": lambda p: f"{p.get('verdict')} {p.get('drifted_columns')}",
}


def add_commands(sub: Any) -> None:
    lineage = sub.add_parser("lineage", help="the chain behind a model version")
    add_common(lineage)
    lineage.add_argument("model", help="MODEL, MODEL@ALIAS or MODEL/VERSION")
    lineage.add_argument("--config", default=None, help="take tracking/lineage URLs from it")
    lineage.add_argument("--format", default="text",
                         choices=["text", "mermaid", "dot", "openlineage"],
                         help="a graph (Mermaid, Graphviz dot) or OpenLineage run events")
    lineage.set_defaults(handler=cmd_lineage)

    serving_at = sub.add_parser("serving-at", help="which versions served a model at an "
                                "instant, with their data, code, gates and approvers")
    add_common(serving_at)
    serving_at.add_argument("model")
    serving_at.add_argument("timestamp", help="ISO 8601, e.g. 2026-12-01T12:00:00Z (UTC "
                            "when no offset is given)")
    serving_at.add_argument("--env", default=None)
    serving_at.add_argument("--config", default=None, help="take the lineage URL from it")
    serving_at.set_defaults(handler=cmd_serving_at)

    status = sub.add_parser("status", help="what is deployed, with what split, since when")
    add_common(status)
    status.add_argument("--config", default=None, help="take the lineage URL from it")
    status.set_defaults(handler=cmd_status)

    models = sub.add_parser("models", help="the registered models (of the caller's project) "
                            "with their aliases")
    add_common(models)
    models.add_argument("--config", default=None, help="take the tracking URI from it")
    models.set_defaults(handler=cmd_models)


def cmd_models(args: argparse.Namespace) -> int:
    from mlflow import MlflowClient

    stores(args)  # points MLflow at the tracking store
    caller = tenant(args)
    found = MlflowClient().search_registered_models(filter_string=caller.registry_filter(),
                                                    max_results=1000)
    rows = [{"model": m.name, "aliases": dict(m.aliases or {}),
             "latest": max((int(v.version) for v in m.latest_versions or []), default=None)}
            for m in found if caller.sees(m.name)]
    text = "\n".join(f"{r['model']}: latest version {r['latest']}, aliases "
                     f"{r['aliases'] or 'none'}" for r in rows) or "no registered models"
    emit(args, rows, text)
    return 0


def cmd_lineage(args: argparse.Namespace) -> int:
    from raymlops.lineage.query import chain_for
    from raymlops.registry.mlflow_registry import resolve

    _, store = stores(args)
    name, version = resolve(owned(args, args.model, "read the lineage of"))
    chain = chain_for(store, name, version)
    if args.format != "text":
        return _export(args, store, chain)
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
    caller = tenant(args)
    rows = [row for row in deployments(store) if caller.sees(row["model"])]
    for row in rows:
        health = str(row["endpoint"] or "").rsplit("/", 1)[0] + "/health"
        try:
            row["live"] = requests.get(health, timeout=2).status_code == 200
        except requests.RequestException:
            row["live"] = False
    text = "\n".join(
        f"{r['model']}{' (' + r['env'] + ')' if r.get('env') else ''}: version {r['version']} "
        f"weights {r['weights']} since {r['since']} "
        f"at {r['endpoint']} ({'live' if r['live'] else 'not reachable now'})" for r in rows
    ) or "nothing deployed yet"
    emit(args, rows, text)
    return 0


def _export(args: argparse.Namespace, store: Any, chain: dict[str, Any]) -> int:
    import json

    from raymlops.lineage import export
    from raymlops.lineage.governance import GovernanceStore

    gov = GovernanceStore(store.url)
    approvals = gov.approvals(chain["model"], chain["version"])
    changes = [c.to_dict() for c in gov.changes(chain["model"])
               if c.to_version == str(chain["version"])]
    if args.format == "openlineage":
        events = export.openlineage_events(chain, approvals, changes)
        print("\n".join(json.dumps(e) for e in events))
    elif args.format == "mermaid":
        print(export.mermaid(chain, approvals, changes), end="")
    else:
        print(export.dot(chain, approvals, changes), end="")
    return 0


def cmd_serving_at(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from raymlops.errors import ConfigError
    from raymlops.lineage.governance import GovernanceStore
    from raymlops.lineage.query import serving_at

    try:
        at = datetime.fromisoformat(args.timestamp.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"TIMESTAMP {args.timestamp!r}: expected ISO 8601, e.g. "
                          "2026-12-01T12:00:00Z") from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    _, store = stores(args)
    model = owned(args, args.model, "read the lineage of")
    answer = serving_at(store, GovernanceStore(store.url), model, at, args.env)
    lines = [f"{answer['model']} at {answer['at']}:"]
    for where in answer["environments"]:
        if not where["serving"]:
            lines.append(f"  {where['env']}: nothing serving since {where['since'][:19]} "
                         f"({where['reason']})")
            continue
        lines.append(f"  {where['env'] or '(no environment)'}: serving since "
                     f"{where['since'][:19]} ({where['change'] or where['reason']})")
        for v in where["versions"]:
            gate = v["gate"] or {}
            lines.append(f"    version {v['version']} {v['share']:g}%  data "
                         f"{str(v['dataset_digest'])[:23]}  commit {str(v['commit'])[:12]}  "
                         f"config {str(v['config_hash'])[:19]}  by {v['author']}  gate "
                         f"{'PASS' if gate.get('passed') else 'REJECT' if gate else '?'}  "
                         f"approvers {', '.join(v['approvers']) or 'none'}")
    emit(args, answer, "\n".join(lines))
    return 0
