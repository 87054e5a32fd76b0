"""Commands that run the pipeline: ``demo``, ``run`` and ``retrain``."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from importlib import resources
from typing import Any

from raymlops.cli._common import add_common, emit, overrides, owned, stores
from raymlops.workspace import Workspace

log = logging.getLogger("raymlops")


def add_commands(sub: Any) -> None:
    demo = sub.add_parser("demo", help="make the demo data and run the whole flow locally")
    add_common(demo)
    demo.add_argument("--port", type=int, default=None, help="HTTP port for Ray Serve")
    demo.add_argument("--rows", type=int, default=20_000,
                      help="rows of demo training data (at least 1,200: its fairness gate "
                      "compares gender groups of 100+ holdout rows)")
    demo.add_argument("--keep-serving", action="store_true",
                      help="keep the endpoint up after the run until Ctrl-C")
    demo.set_defaults(handler=cmd_demo)

    run = sub.add_parser("run", help="run the whole pipeline for one config")
    add_common(run)
    run.add_argument("config", help="pipeline config (YAML)")
    run.add_argument("--address", default=None, help="Ray cluster address (default: local)")
    run.add_argument("--run-id", default=None,
                     help="resume this earlier run (letters, digits, '.', '_', '-')")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key, e.g. --set deploy.port=8123 (YAML value)")
    run.add_argument("--keep-serving", action="store_true",
                     help="keep a local endpoint up after the run until Ctrl-C")
    run.add_argument("--until", default=None, metavar="STAGE",
                     help="stop after this stage (ingest, validate, preprocess, train, "
                     "register, evaluate, deploy, monitor); --run-id continues the run")
    run.set_defaults(handler=cmd_run)

    retrain = sub.add_parser("retrain", help="train a registered version again from what it "
                             "recorded (config, seeds, data snapshot and digest)")
    add_common(retrain)
    retrain.add_argument("model", help="MODEL, MODEL@ALIAS or MODEL/VERSION")
    retrain.add_argument("--config", default=None, help="take tracking/lineage URLs from it")
    retrain.add_argument("--address", default=None, help="Ray cluster address (default: local)")
    retrain.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                         help="override a recorded key, e.g. --set deploy.port=8123")
    retrain.set_defaults(handler=cmd_retrain)


def cmd_demo(args: argparse.Namespace) -> int:
    import yaml

    from raymlops.config import load_config
    from raymlops.data.demo import rows_for_fairness, write_demo_data
    from raymlops.errors import ConfigError

    text = resources.files("raymlops").joinpath("_resources/demo.yaml").read_text()
    config = load_config(yaml.safe_load(text), {"deploy.port": args.port} if args.port else {})
    least = rows_for_fairness(config.evaluation.fairness_min_rows,
                              config.data.split.test_fraction)
    if config.gates.fairness and args.rows < least:
        raise ConfigError(
            f"--rows {args.rows}: the demo needs at least {least}, so that its holdout holds "
            f"two gender groups of evaluation.fairness_min_rows="
            f"{config.evaluation.fairness_min_rows} rows for its fairness gate to compare")
    ws = Workspace.at(args.workdir).ensure()
    paths = write_demo_data(ws.demo_data_dir, rows=args.rows)
    log.info("demo data: %s and %s", paths["train"], paths["production"])
    return run_pipeline(args, config, ws, run_id=None, address=None)


def cmd_run(args: argparse.Namespace) -> int:
    from raymlops.config import load_config
    from raymlops.workspace import check_run_id

    if args.run_id is not None:
        check_run_id(args.run_id)
    config = load_config(args.config, overrides(args.set))
    return run_pipeline(args, config, Workspace.at(args.workdir), run_id=args.run_id,
                        address=args.address, until=args.until)


def run_pipeline(args: argparse.Namespace, config: Any, ws: Workspace, *, run_id: str | None,
                 address: str | None, until: str | None = None) -> int:
    from raymlops.pipeline import Pipeline

    keep = bool(getattr(args, "keep_serving", False))
    pipeline = Pipeline(config, workdir=ws.root, run_id=run_id, address=address,
                        shutdown_ray=not keep, until=until)
    # Libraries print progress to stdout (MLflow: "Successfully registered model ...");
    # stdout is for our own output, so theirs goes to stderr while the pipeline runs.
    with contextlib.redirect_stdout(sys.stderr):
        summary = pipeline.run()
    serving = keep and summary.status == "succeeded" and summary.endpoint is not None
    emit(args, summary.model_dump(), summary_text(summary, ws, serving))
    if keep and not serving:
        print("raymlops: nothing is being served by this run, so --keep-serving has nothing "
              "to keep up", file=sys.stderr)
    if serving:
        from raymlops.pipeline.promotion import environments

        serve_forever(summary.endpoint, stopped_recorder(
            config, ws, str(summary.model_name), environments(config)[0].name,
            actor="raymlops", run=summary.run_id))
    return 0


def summary_text(summary: Any, ws: Workspace, serving: bool) -> str:
    """What the run did, in words; every line says only what happened."""
    head = f"raymlops: run {summary.run_id} {summary.status}"
    if summary.status != "succeeded":
        return "\n".join([head, f"  {summary.message}", f"  summary     {summary.summary_path}"])
    metrics = "  ".join(f"{k} {v:.4f}" for k, v in sorted(summary.metrics.items()))
    drifted = summary.drift.get("drifted_columns") or []
    drift_line = (f"drift in {', '.join(drifted)}" if drifted
                  else summary.drift.get("verdict", "not computed"))
    lifetime = ("serving until Ctrl-C" if serving else
                "it stops with this process; --keep-serving keeps it up")
    replay = summary.replay or {}
    lines = [
        head,
        f"  model       {summary.model_name} version {summary.model_version} "
        f"(MLflow registry aliases: {', '.join(summary.aliases) or 'none'})",
        f"  metrics     {metrics}",
        f"  gate        {'PASS' if summary.gate.get('passed') else 'REJECT'}: "
        f"{'; '.join(summary.gate.get('reasons', []))}",
        f"  endpoint    POST {summary.endpoint} ({lifetime})",
    ]
    if replay:
        lines.append(f"  traffic     {replay.get('ok')}/{replay.get('requests')} replayed requests "
                     f"answered, p50 {replay.get('p50_ms', 0):.1f} ms, "
                     f"p99 {replay.get('p99_ms', 0):.1f} ms")
    else:
        lines.append("  traffic     none replayed (monitor.replay is not configured)")
    total = (summary.usage or {}).get("total")
    if total:
        mb = {key: total.get(key, 0) / 2**20 for key in ("peak_memory_bytes", "spilled_bytes")}
        lines.append(f"  usage       {total.get('cpu_seconds', 0):.1f} CPU-s, "
                     f"{total.get('gpu_seconds', 0):.1f} GPU-s, peak memory "
                     f"{mb['peak_memory_bytes']:.0f} MB, {mb['spilled_bytes']:.0f} MB spilled "
                     "(raymlops usage sums them)")
    lines += [
        f"  drift       {drift_line}",
        *(f"  report      {name}: {path}" for name, path in summary.reports.items() if path),
        f"  summary     {summary.summary_path}",
        f"  MLflow UI   {summary.mlflow_ui}",
        f"  lineage     raymlops lineage {summary.model_name}/{summary.model_version} "
        f"--workdir {ws.root}",
    ]
    return "\n".join(lines)


def serve_forever(endpoint: str | None, on_stop: Any = None) -> None:
    """Until Ctrl-C or SIGTERM; then Serve shuts down gracefully (the replicas write
    their buffered capture), ``on_stop`` records that serving ended, and the interrupt
    propagates: exit 130 or 143."""
    import threading

    from raymlops._internal.ray_runtime import shutdown_ray

    print(f"serving {endpoint}; press Ctrl-C to stop", flush=True)
    try:
        threading.Event().wait()
    finally:
        if on_stop is not None:
            on_stop()
        shutdown_ray()


def stopped_recorder(config: Any, ws: Workspace, model: str, env: str, *, actor: str,
                     run: str) -> Any:
    """What ``serve_forever`` calls when it stops: a ``serving_stopped`` record."""

    def record() -> None:
        from raymlops.pipeline.promotion import Services, record_stopped

        record_stopped(Services.open(config, ws), model, env, actor=actor, run=run,
                       reason="the serving process was stopped (Ctrl-C or SIGTERM), and "
                              "its local Ray with it")

    return record


def cmd_retrain(args: argparse.Namespace) -> int:
    from raymlops.registry.mlflow_registry import resolve
    from raymlops.retrain import retrain

    ws, store = stores(args)
    name, version = resolve(owned(args, args.model, "retrain"))
    with contextlib.redirect_stdout(sys.stderr):
        result = retrain(name, version, workdir=ws.root, address=args.address, store=store,
                         overrides=overrides(args.set))
    new = result.summary
    code = ("same commit" if result.same_commit else
            f"recorded commit {result.source.commit}, now {result.commit_now}")
    text = (f"retrained {name}/{version} as version {new.model_version} (run {new.run_id})\n"
            f"  data: digest {result.source.digest} (same as recorded)\n"
            f"  code: {code}\n"
            f"  test metrics vs recorded: " + "  ".join(
                f"{k} {v:+.2e}" for k, v in sorted(result.metric_diffs.items())) + "\n"
            f"  summary: {new.summary_path}")
    emit(args, result.model_dump(), text)
    return 0
