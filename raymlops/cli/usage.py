"""``raymlops usage``: what the runs used, per tenant (project), model and day;
``raymlops quota``: the platform's quota for a project, in the cluster's GCS."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from raymlops.cli._common import add_common, emit, joined_cluster, stores, tenant


def add_commands(sub: Any) -> None:
    usage = sub.add_parser("usage", help="CPU- and GPU-hours per project (tenant), model and "
                           "day; with --prices, their cost")
    add_common(usage)
    usage.add_argument("--since", default=None, metavar="TIME",
                       help="from this instant on (ISO 8601, e.g. 2026-12-01 or "
                       "2026-12-01T08:00:00Z)")
    usage.add_argument("--prices", default=None, metavar="FILE",
                       help="a YAML price table: cpu_hour, gpu_hour, currency")
    usage.add_argument("--config", default=None, help="take the lineage URL from it")
    usage.set_defaults(handler=cmd_usage)

    quota = sub.add_parser("quota", help="the platform's CPU/GPU quota per project, kept in "
                           "the cluster (a job's tenancy.quota can only lower it)")
    quota_sub = quota.add_subparsers(dest="quota_command", required=True, metavar="ACTION")
    for action, text in (("set", "set a project's quota"), ("show", "the projects' quotas"),
                         ("clear", "remove a project's quota")):
        cmd = quota_sub.add_parser(action, help=text)
        add_common(cmd)
        cmd.add_argument("name", nargs="?" if action == "show" else None, default=None,
                         metavar="PROJECT")
        cmd.add_argument("--address", default=None, help="the Ray cluster (default: "
                         "RAY_ADDRESS or a local `ray start`)")
        cmd.add_argument("--config", default=None, help="take the lineage URL (audit trail) "
                         "from it")
        cmd.add_argument("--as", dest="actor", default=None, help="who (audit trail)")
        if action == "set":
            cmd.add_argument("--cpus", type=float, default=None)
            cmd.add_argument("--gpus", type=float, default=None)
        cmd.set_defaults(handler=cmd_quota)


def _since(text: str | None) -> datetime | None:
    from raymlops.errors import ConfigError

    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--since {text!r}: not an ISO 8601 time (e.g. 2026-12-01 or "
                          "2026-12-01T08:00:00Z)") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _prices(path: str | None) -> dict[str, Any] | None:
    import yaml

    from raymlops.errors import ConfigError

    if path is None:
        return None
    try:
        prices = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"--prices {path}: {exc}") from None
    if not isinstance(prices, dict):
        raise ConfigError(f"--prices {path}: expected a mapping with cpu_hour and gpu_hour")
    for key in ("cpu_hour", "gpu_hour"):
        value = prices.get(key, 0)
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"--prices {path}: {key} must be a number >= 0, not {value!r}")
    unknown = sorted(set(prices) - {"cpu_hour", "gpu_hour", "currency"})
    if unknown:
        raise ConfigError(f"--prices {path}: unknown key {unknown[0]!r} (cpu_hour, gpu_hour, "
                          "currency)")
    return prices


def cmd_usage(args: argparse.Namespace) -> int:
    from raymlops.pipeline.accounting import aggregate

    since, prices = _since(args.since), _prices(args.prices)
    _, store = stores(args)
    events = store.events(kind="resources_used")
    project = tenant(args).project  # a tenant sees its own usage only
    rows = aggregate(events, project=project, since=since, prices=prices)
    lines = [f"{'day':<10}  {'project':<16} {'model':<20} {'runs':>4} {'CPU-h':>9} "
             f"{'GPU-h':>8} {'peak GB':>8}" + ("  cost" if prices else "")]
    for row in rows:
        line = (f"{row['day']:<10}  {row['project']:<16} {row['model']:<20} {row['runs']:>4} "
                f"{row['cpu_hours']:>9.4f} {row['gpu_hours']:>8.4f} "
                f"{row['peak_memory_bytes'] / 1e9:>8.2f}")
        if prices:
            line += f"  {row['cost']:.4f} {row.get('currency', '')}".rstrip()
        lines.append(line)
    if not rows:
        lines = ["raymlops: no recorded usage" + (f" for project {project}"
                                                  if project else "")
                 + (f" since {since.isoformat()}" if since else "")]
    emit(args, rows, "\n".join(lines))
    return 0


def cmd_quota(args: argparse.Namespace) -> int:
    import re

    from raymlops.config.base import NAME_PATTERN
    from raymlops.config.tenancy import SEPARATOR
    from raymlops.errors import ConfigError, PermissionDeniedError
    from raymlops.tenancy import ledger

    caller = tenant(args).project
    action, name = args.quota_command, args.name
    if name is not None and (not re.match(NAME_PATTERN, name) or SEPARATOR in name):
        raise ConfigError(f"PROJECT {name!r}: a project name (letters, digits, '_', '-'; no "
                          f"{SEPARATOR!r})")
    if action != "show" and caller is not None:
        raise PermissionDeniedError(f"project {caller!r} cannot {action} a quota: the "
                                    "platform sets them (run without --project)")
    if action == "show" and caller is not None and name not in (None, caller):
        raise PermissionDeniedError(f"project {caller!r} cannot read project {name!r}'s quota")
    quota = {}
    if action == "set":
        quota = {k: v for k, v in (("CPU", args.cpus), ("GPU", args.gpus)) if v is not None}
        if not quota or any(v < 0 for v in quota.values()):
            raise ConfigError("raymlops quota set: give --cpus and/or --gpus, each >= 0")
    with joined_cluster(args, "whose quotas these are"):
        if action == "show":
            every = ledger.platform_quotas()
            rows = {p: q for p, q in every.items() if p == (name or caller or p)}
            emit(args, rows, "\n".join(f"{p:<20} {q}" for p, q in sorted(rows.items()))
                 or "raymlops: no quota set" + (f" for project {name or caller}"
                                                if name or caller else ""))
            return 0
        assert name is not None  # argparse requires it for set and clear
        before = ledger.platform_quota(name)
        if action == "set":
            ledger.set_platform_quota(name, {**before, **quota})
            after = ledger.platform_quota(name)
        else:
            ledger.clear_platform_quota(name)
            after = {}
    _audit(args, f"quota_{action}", str(name), before, after)
    emit(args, {"project": name, "before": before, "quota": after},
         f"project {name}: quota {after or 'none'} (was {before or 'none'})")
    return 0


def _audit(args: argparse.Namespace, action: str, name: str, before: dict[str, float],
           after: dict[str, float]) -> None:
    from raymlops.lineage.audit import AuditTrail, current_actor

    ws, store = stores(args)
    trail = AuditTrail(store.url, witness=ws.root / "audit-head.json")
    try:
        trail.append(actor=current_actor(args.actor), action=action, obj=f"project:{name}",
                     reason=f"the platform's quota for project {name}: {before or 'none'} -> "
                            f"{after or 'none'}", payload={"before": before, "quota": after})
    finally:
        trail.close()
