"""Commands that move a version through environments and answer for it: ``approve``,
``promote``, ``rollback``, ``changes`` and ``audit verify``."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

from raymlops.cli._common import add_common, emit
from raymlops.workspace import Workspace


def _governed(parser: argparse.ArgumentParser) -> None:
    add_common(parser)
    parser.add_argument("--config", required=True,
                        help="the pipeline config (environments, approval policies, stores)")
    parser.add_argument("--as", dest="actor", default=None,
                        help="who acts (default $RAYMLOPS_USER, else the OS user)")


def _serving_options(parser: argparse.ArgumentParser) -> None:
    """For the commands that deploy: where Ray is, and whether to stay up serving."""
    parser.add_argument("--address", default=None, help="Ray cluster address")
    parser.add_argument("--keep-serving", action="store_true",
                        help="keep a local endpoint up until Ctrl-C")


def add_commands(sub: Any) -> None:
    approve = sub.add_parser("approve", help="approve a version for an environment")
    _governed(approve)
    approve.add_argument("model")
    approve.add_argument("version")
    approve.add_argument("--env", required=True)
    approve.add_argument("--comment", default="")
    approve.set_defaults(handler=cmd_approve)

    promote = sub.add_parser("promote", help="move a version one environment up")
    _governed(promote)
    promote.add_argument("model")
    promote.add_argument("version")
    promote.add_argument("--to", dest="env", required=True)
    _serving_options(promote)
    promote.set_defaults(handler=cmd_promote)

    rollback = sub.add_parser("rollback", help="return an environment to the version its "
                              "last change replaced")
    _governed(rollback)
    rollback.add_argument("model")
    rollback.add_argument("--env", required=True)
    _serving_options(rollback)
    rollback.set_defaults(handler=cmd_rollback)

    changes = sub.add_parser("changes", help="the change records (promotions, deployments, "
                             "rollbacks)")
    add_common(changes)
    changes.add_argument("model", nargs="?", default=None)
    changes.add_argument("--config", default=None, help="take the lineage URL from it")
    changes.set_defaults(handler=cmd_changes)

    audit = sub.add_parser("audit", help="the audit trail")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = audit_sub.add_parser("verify", help="check the hash chain and its witnesses")
    add_common(verify)
    verify.add_argument("--config", default=None, help="take the lineage URL from it")
    verify.set_defaults(handler=cmd_audit_verify)


def _services(args: argparse.Namespace) -> Any:
    import mlflow

    from raymlops.cli._common import tenant
    from raymlops.config import load_config
    from raymlops.pipeline.promotion import Services

    config = load_config(args.config)
    caller = tenant(args, config)  # --project must be the config's own
    if getattr(args, "model", None):  # --project binds as the config's tenancy does
        caller.own(args.model, {"approve": "approve", "promote": "promote",
                                "rollback": "roll back"}.get(args.command, "use"))
    ws = Workspace.at(args.workdir)
    mlflow.set_tracking_uri(config.tracking.uri or ws.mlflow_uri)
    from raymlops.tenancy import use_workspace

    use_workspace(config)
    return Services.open(config, ws)


def _actor(args: argparse.Namespace) -> str:
    from raymlops.lineage.audit import current_actor

    return current_actor(args.actor)


def cmd_approve(args: argparse.Namespace) -> int:
    from raymlops.pipeline.promotion import approve

    result = approve(_services(args), args.model, args.version, args.env, actor=_actor(args),
                     comment=args.comment)
    text = (f"{result['approver']} approved {args.model} version {args.version} for "
            f"{args.env} ({len(result['approvals'])} of {result['required']} needed)"
            + ("" if result["new"] else "; already recorded before"))
    emit(args, result, text)
    return 0


def _serving(args: argparse.Namespace, action: Any) -> Any:
    import mlflow

    from raymlops._internal.ray_runtime import init_ray, shutdown_ray

    services = _services(args)
    started = init_ray(args.address, ingress=services.config.deploy.ingress)
    change = None
    try:
        with contextlib.redirect_stdout(sys.stderr):
            change = action(services, mlflow.get_tracking_uri())
        emit(args, change.to_dict(), f"{change.id} {change.kind} of {change.model} version "
             f"{change.to_version} to {change.env}: {change.state}")
        if args.keep_serving:
            from raymlops.cli.run import serve_forever, stopped_recorder

            started = False
            serve_forever(None, stopped_recorder(services.config, services.workspace,
                                                 change.model, change.env,
                                                 actor=change.requester, run=change.id))
    finally:
        if started:
            if change is not None and change.state in ("implemented", "rolled_back"):
                from raymlops.pipeline.promotion import record_stopped

                record_stopped(services, change.model, change.env, actor=change.requester,
                               run=change.id, reason="the command exited, and the local "
                               "Ray it started (with Serve) stopped; --keep-serving keeps "
                               "it up")
            shutdown_ray()
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from raymlops.pipeline.promotion import promote

    return int(_serving(args, lambda s, uri: promote(s, args.model, args.version, args.env,
                                                     actor=_actor(args), tracking_uri=uri)))


def cmd_rollback(args: argparse.Namespace) -> int:
    from raymlops.pipeline.promotion import rollback

    return int(_serving(args, lambda s, uri: rollback(s, args.model, args.env,
                                                      actor=_actor(args), tracking_uri=uri)))


def _lineage_url(args: argparse.Namespace) -> str:
    from raymlops.config import load_config

    ws = Workspace.at(args.workdir)
    if args.config:
        return load_config(args.config).lineage.url or ws.lineage_url
    return ws.lineage_url


def cmd_changes(args: argparse.Namespace) -> int:
    from raymlops.cli._common import owned, tenant
    from raymlops.lineage.governance import GovernanceStore

    caller = tenant(args)
    model = owned(args, args.model, "read the changes of") if args.model else None
    changes = [c.to_dict() for c in GovernanceStore(_lineage_url(args)).changes(model)
               if caller.sees(c.model)]
    lines = [f"{c['id']}  {c['kind']:<10} {c['model']} {c['from_version'] or '-'} -> "
             f"{c['to_version']} in {c['env']}: {c['state']} (requested by {c['requester']}"
             f"; approvers {', '.join(c['approvers']) or 'none'}; rollback to "
             f"{c['rollback_plan'].get('rollback_to') or 'nothing'})" for c in changes]
    emit(args, changes, "\n".join(lines) or "no change records")
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from raymlops.errors import IntegrityError
    from raymlops.lineage.audit import AuditTrail

    ws = Workspace.at(args.workdir)
    witnesses, unavailable = _registry_witnesses(args)
    if unavailable:
        print(f"raymlops: warning: the registry's witnesses were not checked: {unavailable}",
              file=sys.stderr)
    result = AuditTrail(_lineage_url(args), witness=ws.root / "audit-head.json").verify(
        witnesses)
    payload = {"ok": result.ok, "entries": result.entries, "head": result.head,
               "first_bad": result.first_bad, "problem": result.problem,
               "registry_witnesses": len(witnesses),
               "registry_witnesses_unavailable": unavailable or None}
    if not result.ok:
        emit(args, payload, f"audit trail NOT intact: {result.problem}")
        raise IntegrityError(f"audit trail: {result.problem}")
    emit(args, payload, f"audit trail intact: {result.entries} entries, head "
         f"{result.head[0] if result.head else 0}:{result.head[1][:16] if result.head else ''}")
    return 0


def _registry_witnesses(args: argparse.Namespace) -> tuple[list[tuple[str, int, str]], str]:
    """Heads recorded in registry tags (``raymlops.audit_head``) of every version."""
    import mlflow

    from raymlops.config import load_config
    from raymlops.pipeline.promotion import AUDIT_HEAD_TAG

    ws = Workspace.at(args.workdir)
    uri = ws.mlflow_uri
    if args.config:
        uri = load_config(args.config).tracking.uri or uri
    mlflow.set_tracking_uri(uri)
    found = []
    try:
        for version in mlflow.MlflowClient().search_model_versions(max_results=10_000):
            tag = (version.tags or {}).get(AUDIT_HEAD_TAG)
            if tag and ":" in tag:
                seq, digest = tag.split(":", 1)
                found.append((f"tag {AUDIT_HEAD_TAG} of {version.name}/{version.version}",
                              int(seq), digest))
    except Exception as exc:  # noqa: BLE001 - said aloud; the witness file still counts
        return [], f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return found, ""
