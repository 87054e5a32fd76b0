"""Commands on model quality: ``evaluate`` (any registered version on any labelled table)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from raymlops.cli._common import add_common, emit, owned, stores


def add_commands(sub: Any) -> None:
    evaluate = sub.add_parser("evaluate", help="metrics, slices and fairness of a registered "
                              "model on a labelled table")
    add_common(evaluate)
    evaluate.add_argument("model", help="MODEL, MODEL@ALIAS or MODEL/VERSION")
    evaluate.add_argument("--data", required=True, help="labelled table (CSV/Parquet path, "
                          "glob or folder), raw: the version's own normalization applies")
    evaluate.add_argument("--config", default=None, help="take tracking/lineage URLs from it")
    evaluate.add_argument("--address", default=None, help="Ray cluster address")
    evaluate.set_defaults(handler=cmd_evaluate)


def recorded_config(name: str, version: str) -> Any:
    """The pipeline config the version was trained with (from its MLflow run)."""
    import mlflow

    from raymlops.config import load_config

    client = mlflow.MlflowClient()
    run_id = str(client.get_model_version(name, version).run_id)
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(run_id, "config/pipeline.json", tmp)
        return load_config(json.loads(Path(path).read_text()))


def cmd_evaluate(args: argparse.Namespace) -> int:
    import mlflow

    from raymlops._internal.io import resolve_files
    from raymlops._internal.ray_runtime import init_ray, shutdown_ray
    from raymlops.evaluation.fairness import left_out
    from raymlops.pipeline.table_evaluation import evaluate_table
    from raymlops.registry.mlflow_registry import resolve

    stores(args)
    name, version = resolve(owned(args, args.model, "load"))
    config = recorded_config(name, version)
    files = resolve_files(args.data, key="--data")
    started = init_ray(args.address)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            result = evaluate_table(files, model_uri=f"models:/{name}/{version}",
                                    tracking_uri=mlflow.get_tracking_uri(), config=config)
    finally:
        if started:
            shutdown_ray()
    result.update({"model": name, "version": version, "data": args.data})
    lines = [f"{name} version {version} on {result['rows']} rows of {args.data} "
             f"(threshold {result['threshold']:.4f}; {result['rows_without_label']} rows "
             f"without a usable label left out; {result['rows_per_s'] or 0:.0f} rows/s)"]
    lines += [f"  {k:<14} {v:.4f}" for k, v in sorted(result["metrics"].items())]
    for column, numbers in (result.get("fairness") or {}).items():
        small = left_out(numbers)
        lines.append(f"  fairness {column}: demographic parity difference "
                     f"{_number(numbers['demographic_parity_difference'])}, equalized odds "
                     f"difference {_number(numbers['equalized_odds_difference'])}"
                     + (f" ({small})" if small else ""))
    emit(args, result, "\n".join(lines))
    return 0


def _number(value: float | None) -> str:
    return "not computed" if value is None else f"{value:.4f}"
