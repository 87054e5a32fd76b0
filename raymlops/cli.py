"""The ``raymlops`` command.

Exit codes: 0 success; 2 bad config; 3 bad data; 4 gate rejected; 75 retryable
(a busy port, a cluster still starting); 1 anything else. Failures print one line;
the full traceback of an unexpected error goes to ``<workdir>/logs/last-error.log``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import traceback
from importlib import resources
from pathlib import Path
from typing import Any

from raymlops.errors import RaymlopsError
from raymlops.workspace import Workspace

log = logging.getLogger("raymlops")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    logging.getLogger("raymlops").setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("mlflow", "alembic", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", default=None,
                        help="state directory (default .raymlops/, or $RAYMLOPS_WORKDIR)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raymlops", description="The whole MLOps loop on Ray: data, training, "
        "registry, serving, lineage and drift.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="make the demo data and run the whole flow locally")
    _add_common(demo)
    demo.add_argument("--port", type=int, default=None, help="HTTP port for Ray Serve")
    demo.add_argument("--rows", type=int, default=20_000, help="rows of demo training data")
    demo.add_argument("--keep-serving", action="store_true",
                      help="keep the endpoint up after the run until Ctrl-C")

    run = sub.add_parser("run", help="run the whole pipeline for one config")
    _add_common(run)
    run.add_argument("config", help="pipeline config (YAML)")
    run.add_argument("--address", default=None, help="Ray cluster address (default: local)")
    run.add_argument("--run-id", default=None, help="resume this earlier run")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key, e.g. --set deploy.port=8123 (YAML value)")
    run.add_argument("--keep-serving", action="store_true",
                     help="keep a local endpoint up after the run until Ctrl-C")

    retrain = sub.add_parser("retrain", help="train a registered version again from what it "
                             "recorded (config, seeds, data snapshot and digest)")
    _add_common(retrain)
    retrain.add_argument("model", help="MODEL, MODEL@ALIAS or MODEL/VERSION")
    retrain.add_argument("--config", default=None, help="take tracking/lineage URLs from it")
    retrain.add_argument("--address", default=None, help="Ray cluster address (default: local)")
    retrain.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                         help="override a recorded key, e.g. --set deploy.port=8123")

    lineage = sub.add_parser("lineage", help="the chain behind a model version")
    _add_common(lineage)
    lineage.add_argument("model", help="MODEL, MODEL@ALIAS or MODEL/VERSION")
    lineage.add_argument("--config", default=None, help="take tracking/lineage URLs from it")

    status = sub.add_parser("status", help="what is deployed, with what split, since when")
    _add_common(status)
    status.add_argument("--config", default=None, help="take the lineage URL from it")

    schema = sub.add_parser("schema", help="infer the expected schema from a trusted table")
    _add_common(schema)
    schema.add_argument("--data", required=True, help="trusted table (CSV/Parquet path or glob)")
    schema.add_argument("--config", required=True, help="pipeline config (target, task, PII)")
    schema.add_argument("--out", required=True, help="where to write the schema JSON; point "
                        "data.validation.schema at it")

    drift = sub.add_parser("drift", help="a drift report between two tables (JSON + HTML)")
    _add_common(drift)
    drift.add_argument("--reference", required=True, help="reference table (CSV/Parquet)")
    drift.add_argument("--current", required=True, help="current table (CSV/Parquet)")
    drift.add_argument("--config", default=None, help="columns and thresholds from a config")
    drift.add_argument("--out", default=None, help="report folder (default <workdir>/reports)")
    return parser


def _overrides(pairs: list[str]) -> dict[str, Any]:
    import yaml

    from raymlops.errors import ConfigError

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE, e.g. deploy.port=8123")
        out[key.strip()] = yaml.safe_load(value)
    return out


def _print(args: argparse.Namespace, payload: Any, text: str) -> None:
    if args.json:
        print(json.dumps(payload, indent=2, default=str))
    else:
        print(text)


# -- commands ----------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from raymlops.config import load_config
    from raymlops.data.demo import write_demo_data

    ws = Workspace.at(args.workdir).ensure()
    paths = write_demo_data(ws.demo_data_dir, rows=args.rows)
    log.info("demo data: %s and %s", paths["train"], paths["production"])
    text = resources.files("raymlops").joinpath("_resources/demo.yaml").read_text()
    import yaml

    overrides = {"deploy.port": args.port} if args.port else {}
    config = load_config(yaml.safe_load(text), overrides)
    return _run_pipeline(args, config, ws, run_id=None, address=None)


def cmd_run(args: argparse.Namespace) -> int:
    from raymlops.config import load_config

    config = load_config(args.config, _overrides(args.set))
    ws = Workspace.at(args.workdir)
    return _run_pipeline(args, config, ws, run_id=args.run_id, address=args.address)


def _run_pipeline(args: argparse.Namespace, config: Any, ws: Workspace, *, run_id: str | None,
                  address: str | None) -> int:
    from raymlops.pipeline import Pipeline

    keep = bool(getattr(args, "keep_serving", False))
    pipeline = Pipeline(config, workdir=ws.root, run_id=run_id, address=address,
                        shutdown_ray=not keep)
    # Libraries print progress to stdout (MLflow: "Successfully registered model ...");
    # stdout is for our own output, so theirs goes to stderr while the pipeline runs.
    with contextlib.redirect_stdout(sys.stderr):
        summary = pipeline.run()
    _print(args, summary.model_dump(), _summary_text(summary, ws, keep))
    if keep:
        _serve_forever(summary.endpoint)
    return 0


def _summary_text(summary: Any, ws: Workspace, keep: bool) -> str:
    metrics = "  ".join(f"{k} {v:.4f}" for k, v in sorted(summary.metrics.items()))
    drifted = summary.drift.get("drifted_columns") or []
    drift_line = (f"drift in {', '.join(drifted)}" if drifted
                  else summary.drift.get("verdict", "not computed"))
    served = ("serving until Ctrl-C" if keep else
              "answered the replayed traffic; it stops with this process (--keep-serving keeps it)")
    replay = summary.replay or {}
    lines = [
        f"raymlops: run {summary.run_id} {summary.status}",
        f"  model       {summary.model_name} version {summary.model_version} "
        "(MLflow registry aliases: candidate, champion)",
        f"  metrics     {metrics}",
        f"  gate        {'PASS' if summary.gate.get('passed') else 'REJECT'}: "
        f"{'; '.join(summary.gate.get('reasons', []))}",
        f"  endpoint    POST {summary.endpoint} ({served})",
    ]
    if replay:
        lines.append(f"  traffic     {replay.get('ok')}/{replay.get('requests')} requests ok, "
                     f"p50 {replay.get('p50_ms', 0):.1f} ms, p99 {replay.get('p99_ms', 0):.1f} ms")
    lines += [
        f"  drift       {drift_line}",
        *(f"  report      {name}: {path}" for name, path in summary.reports.items() if path),
        f"  summary     {summary.summary_path}",
        f"  MLflow UI   {summary.mlflow_ui}",
        f"  lineage     raymlops lineage {summary.model_name}/{summary.model_version} "
        f"--workdir {ws.root}",
    ]
    return "\n".join(lines)


def _serve_forever(endpoint: str | None) -> None:
    import threading

    print(f"serving {endpoint}; press Ctrl-C to stop", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        import ray

        ray.shutdown()


def _stores(args: argparse.Namespace) -> tuple[Workspace, Any]:
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


def cmd_lineage(args: argparse.Namespace) -> int:
    from raymlops.lineage.query import chain_for
    from raymlops.registry.mlflow_registry import resolve

    _, store = _stores(args)
    name, version = resolve(args.model)
    chain = chain_for(store, name, version)
    lines = [f"{name} version {version} <- run {chain['run_id']} <- dataset "
             f"{chain['dataset_digest']}"]
    for step in chain["steps"]:
        payload = step["payload"]
        detail = {
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
        }[step["kind"]](payload)
        lines.append(f"  {step['at'][:19]}  {step['kind']:<17} {detail}")
    _print(args, chain, "\n".join(lines))
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    from raymlops.registry.mlflow_registry import resolve
    from raymlops.retrain import retrain

    ws, store = _stores(args)
    name, version = resolve(args.model)
    with contextlib.redirect_stdout(sys.stderr):
        result = retrain(name, version, workdir=ws.root, address=args.address, store=store,
                         overrides=_overrides(args.set))
    new = result.summary
    code = ("same commit" if result.same_commit else
            f"recorded commit {result.source.commit}, now {result.commit_now}")
    text = (f"retrained {name}/{version} as version {new.model_version} (run {new.run_id})\n"
            f"  data: digest {result.source.digest} (same as recorded)\n"
            f"  code: {code}\n"
            f"  test metrics vs recorded: " + "  ".join(
                f"{k} {v:+.2e}" for k, v in sorted(result.metric_diffs.items())) + "\n"
            f"  summary: {new.summary_path}")
    _print(args, result.model_dump(), text)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    import requests

    from raymlops.lineage.query import deployments

    _, store = _stores(args)
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
    _print(args, rows, text)
    return 0


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
    _print(args, {**schema.model_dump(), "path": str(path)}, text)
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
    _print(args, {**report, "json": str(json_path), "html": str(html_path)}, text)
    return 0


COMMANDS = {"demo": cmd_demo, "run": cmd_run, "retrain": cmd_retrain, "lineage": cmd_lineage,
            "status": cmd_status, "schema": cmd_schema, "drift": cmd_drift}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from raymlops._internal.ray_runtime import set_ray_auth_mode

    set_ray_auth_mode()
    try:
        return COMMANDS[args.command](args)
    except RaymlopsError as exc:
        print(f"raymlops: {exc.headline()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("raymlops: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - last resort: one line here, traceback in a file
        path = Workspace.at(getattr(args, "workdir", None)).root / "logs" / "last-error.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(traceback.format_exc())
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(f"raymlops: unexpected {type(exc).__name__}: {first} (traceback in {path})",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
