"""Resource accounting for a run: what each stage held (``_internal.usage``), written to
lineage (a ``resources_used`` event that ``raymlops usage`` sums), to the MLflow run of
the trained model, and to the run summary."""

from __future__ import annotations

import logging
import time
from typing import Any

from raymlops._internal.usage import UsageMeter, totals

log = logging.getLogger("raymlops")


def record_usage(meter: UsageMeter, ctx: Any, store: Any, run_id: str) -> dict[str, Any]:
    """Collect the stages' usage once the run's stages are over; {} if none ran."""
    per_stage = meter.collect()
    if not per_stage:
        return {}
    total = totals(per_stage)
    usage = {"stages": per_stage, "total": total}
    config = ctx.config
    registration = ctx.results.get("register")
    store.add_event(run_id, "usage", "resources_used", {
        "project": config.project, "model": config.deploy.name, **usage},
        model_name=config.deploy.name,
        model_version=getattr(registration, "version", None))
    log.info("run %s used %.1f CPU-seconds and %.1f GPU-seconds (peak memory %.0f MB, %.0f MB "
             "spilled) in %d stage(s)", run_id, total["cpu_seconds"], total["gpu_seconds"],
             total["peak_memory_bytes"] / 2**20, total["spilled_bytes"] / 2**20,
             len(per_stage))
    trained = ctx.results.get("train")
    if trained is not None:
        # every attempt of the run so far (one job per stage records one each): the
        # MLflow totals are the run's, not this attempt's
        attempts = [e.payload.get("total") or {} for e in store.events(
            run_id=run_id, kind="resources_used")]
        run_total = {key: round(sum(float(t.get(key, 0.0)) for t in attempts), 3)
                     for key in total}
        run_total["peak_memory_bytes"] = max(
            float(t.get("peak_memory_bytes", 0.0)) for t in attempts)
        _to_mlflow(trained.mlflow_run_id, per_stage, run_total)
    return usage


def _to_mlflow(mlflow_run_id: str, per_stage: dict[str, dict[str, float]],
               total: dict[str, float]) -> None:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(f"usage/{key}", float(value), now, 0) for key, value in total.items()]
    metrics += [Metric(f"usage/{stage}/{key}", float(value), now, 0)
                for stage, usage in per_stage.items() for key, value in usage.items()]
    try:
        MlflowClient().log_batch(mlflow_run_id, metrics=metrics)
    except Exception as exc:  # noqa: BLE001 - lineage holds it; the run is not failed for this
        log.warning("usage: not logged to MLflow run %s: %s", mlflow_run_id, exc)


def aggregate(events: list[Any], *, project: str | None = None, since: Any = None,
              prices: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """``resources_used`` events summed per (project, model, day), oldest day first.

    Each attempt of a run records what it used (a resumed run adds only the stages it
    ran again); ``runs`` counts distinct run ids."""
    from raymlops._internal.usage import cost

    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for event in events:
        if event.kind != "resources_used":
            continue
        payload = event.payload
        if project is not None and payload.get("project") != project:
            continue
        if since is not None and event.ts < since:
            continue
        key = (str(payload.get("project")), str(payload.get("model")),
               event.ts.date().isoformat())
        row = rows.setdefault(key, {"project": key[0], "model": key[1], "day": key[2],
                                    "runs": set(), "cpu_hours": 0.0, "gpu_hours": 0.0,
                                    "peak_memory_bytes": 0.0, "spilled_bytes": 0.0})
        total = payload.get("total") or {}
        row["runs"].add(event.run_id)
        row["cpu_hours"] += float(total.get("cpu_seconds", 0.0)) / 3600
        row["gpu_hours"] += float(total.get("gpu_seconds", 0.0)) / 3600
        row["peak_memory_bytes"] = max(row["peak_memory_bytes"],
                                       float(total.get("peak_memory_bytes", 0.0)))
        row["spilled_bytes"] += float(total.get("spilled_bytes", 0.0))
    out = []
    for key in sorted(rows, key=lambda k: (k[2], k[0], k[1])):
        row = rows[key]
        row["runs"] = len(row["runs"])
        row["cpu_hours"], row["gpu_hours"] = round(row["cpu_hours"], 6), round(
            row["gpu_hours"], 6)
        if prices:
            row["cost"] = cost({"cpu_seconds": row["cpu_hours"] * 3600,
                                "gpu_seconds": row["gpu_hours"] * 3600}, prices)
            row["currency"] = str(prices.get("currency", ""))
        out.append(row)
    return out
