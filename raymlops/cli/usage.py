"""``raymlops usage``: what the runs used, per tenant (project), model and day."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from raymlops.cli._common import add_common, emit, stores, tenant


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
