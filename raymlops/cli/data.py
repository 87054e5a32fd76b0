"""Commands on tables: ``schema`` (the expected schema) and ``drift`` (a drift report)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from raymlops.cli._common import add_common, emit
from raymlops.workspace import Workspace

log = logging.getLogger("raymlops")


def add_commands(sub: Any) -> None:
    schema = sub.add_parser("schema", help="infer the expected schema from a trusted table")
    add_common(schema)
    schema.add_argument("--data", required=True, help="trusted table (CSV/Parquet path or glob)")
    schema.add_argument("--config", required=True, help="pipeline config (target, task, PII)")
    schema.add_argument("--out", required=True, help="where to write the schema JSON; point "
                        "data.validation.schema at it")
    schema.set_defaults(handler=cmd_schema)

    drift = sub.add_parser("drift", help="a drift report between two tables (JSON + HTML)")
    add_common(drift)
    drift.add_argument("--reference", required=True, help="reference table (CSV/Parquet)")
    drift.add_argument("--current", required=True, help="current table (CSV/Parquet)")
    drift.add_argument("--config", default=None, help="columns and thresholds from a config")
    drift.add_argument("--out", default=None, help="report folder (default <workdir>/reports)")
    drift.set_defaults(handler=cmd_drift)


def cmd_schema(args: argparse.Namespace) -> int:
    from raymlops._internal.io import read_local_table
    from raymlops.config import load_config
    from raymlops.data.schema import infer_schema

    config = load_config(args.config)
    ws = Workspace.at(args.workdir)
    frame = read_local_table(ws.expand(args.data), key="--data")
    schema = infer_schema(frame, config.data)
    path = schema.save(Path(args.out))
    text = (f"schema of {len(frame)} trusted rows: {len(schema.columns)} columns, "
            f"labels {schema.labels}, {len(schema.categories)} category sets -> {path}")
    emit(args, {**schema.model_dump(), "path": str(path)}, text)
    return 0


def cmd_drift(args: argparse.Namespace) -> int:
    import pandas as pd

    from raymlops._internal.io import read_local_table
    from raymlops.config import DriftConfig, load_config
    from raymlops.monitoring.drift import compute_drift, write_report

    reference = read_local_table(args.reference, key="--reference")
    current = read_local_table(args.current, key="--current")
    drift_cfg, excluded = DriftConfig(), set()
    numeric = categorical = None
    if args.config:
        config = load_config(args.config)
        drift_cfg = config.monitor.drift
        excluded = {config.data.target, config.data.id_column, *config.data.pii}
        numeric, categorical = config.data.numeric, config.data.categorical
    columns = [c for c in reference.columns if c not in excluded and not c.startswith("_")]
    if not args.config:
        # Without a config, a text column whose values are all distinct is an identifier.
        ids = [c for c in columns if reference[c].dtype.kind not in "biuf"
               and reference[c].nunique() == len(reference) > 1]
        columns = [c for c in columns if c not in ids]
        if ids:
            log.info("drift: skipping identifier-like columns %s (pass --config to choose)", ids)
    if numeric is None:
        numeric = [c for c in columns if pd.api.types.is_numeric_dtype(reference[c])]
    if categorical is None:
        categorical = [c for c in columns if c not in numeric]
    report = compute_drift(reference, current, numeric=numeric, categorical=categorical,
                           config=drift_cfg)
    out = Path(args.out) if args.out else Workspace.at(args.workdir).root / "reports"
    json_path, html_path = write_report(report, out)
    text = (f"drift verdict: {report['verdict']}; drifted columns: "
            f"{', '.join(report['drifted_columns']) or 'none'}\n  {json_path}\n  {html_path}")
    emit(args, {**report, "json": str(json_path), "html": str(html_path)}, text)
    return 0
