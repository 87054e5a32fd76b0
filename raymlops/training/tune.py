"""Hyperparameter search with Ray Tune over Ray Train V2 trainers.

Each trial is a function that builds a trainer for its hyperparameters and fits it,
with ``TuneReportCallback`` forwarding the trainer's reports to Tune, so the ASHA
scheduler can stop poor trials at its rungs. The best trial is chosen on the
configured validation metric, from each trial's last report. A rerun with the same
name restores the experiment and runs only the trials that had not finished.

The name carries the digest of the training stage's inputs (``train.py``), and the
experiment folder records the tuning settings it was started with
(``raymlops-tune.json``: search space, trials, scheduler, metric, base params, data).
``Tuner.restore`` keeps the old search space, trials and scheduler whatever the new
config says, so a folder whose record differs is never restored: the search starts
afresh under a name that carries the settings' digest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from raymlops.config import SearchDimension, TuneSettings
from raymlops.errors import RaymlopsError
from raymlops.training.trainer import Plan, training_failure, trials_failure

log = logging.getLogger(__name__)


@dataclass
class TrialRecord:
    trial_id: str
    params: dict[str, Any]
    history: list[dict[str, float]]
    last: dict[str, float]
    status: str
    error: str | None = None


@dataclass
class TuneOutcome:
    best_trial: str
    best_params: dict[str, Any]
    checkpoint_dir: Path
    metric: str
    mode: str
    trials: list[TrialRecord] = field(default_factory=list)
    #: the Tune experiment's name (another than asked for when settings changed)
    name: str = ""


def search_space(space: dict[str, SearchDimension]) -> dict[str, Any]:
    from ray import tune

    out: dict[str, Any] = {}
    for name, dim in space.items():
        if dim.uniform is not None:
            out[name] = tune.uniform(*dim.uniform)
        elif dim.loguniform is not None:
            out[name] = tune.loguniform(*dim.loguniform)
        elif dim.randint is not None:
            out[name] = tune.randint(dim.randint[0], dim.randint[1] + 1)  # inclusive, as written
        elif dim.choice is not None:
            out[name] = tune.choice(dim.choice)
        else:
            out[name] = tune.grid_search(list(dim.grid or []))
    return out


def expected_reports(plan: Plan) -> int:
    """Reports a full trial makes: ASHA's ``max_t`` when the config gives none."""
    loop = plan.loop_config(plan.config.train.params)
    total = loop["rounds"] if plan.framework == "xgboost" else loop["params"]["epochs"]
    every = loop["report_every"] if plan.framework == "xgboost" else 1
    return max(1, math.ceil(total / every))


def _scheduler(settings: TuneSettings, plan: Plan) -> Any:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    s = settings.scheduler
    if s.type == "fifo":
        return FIFOScheduler()
    return ASHAScheduler(time_attr="training_iteration", max_t=s.max_t or expected_reports(plan),
                         grace_period=s.grace_period, reduction_factor=s.reduction_factor)


def _trial_id(result: Any) -> str:
    return str((result.metrics or {}).get("trial_id") or Path(result.path).name)


def _records(grid: Any, metric: str) -> list[TrialRecord]:
    records = []
    for result in grid:
        frame = result.metrics_dataframe
        history = [] if frame is None else [
            {k: float(v) for k, v in row.items() if isinstance(v, int | float) and
             not isinstance(v, bool) and not str(k).startswith(("time_", "timestamp", "pid"))}
            for row in frame.to_dict("records")]
        last = {k: float(v) for k, v in (result.metrics or {}).items()
                if isinstance(v, int | float) and not isinstance(v, bool)}
        status = "FAILED" if result.error else (
            "FINISHED" if last.get("final") else "STOPPED_EARLY")
        records.append(TrialRecord(
            trial_id=_trial_id(result),
            params=dict(result.config or {}), history=history, last=last, status=status,
            error=str(result.error).splitlines()[0][:500] if result.error else None))
    return records


SETTINGS_FILE = "raymlops-tune.json"


def tune_settings(plan: Plan, settings: TuneSettings, metric: str, mode: str) -> dict[str, Any]:
    """What a Tune experiment was started with; a restore needs all of it unchanged."""
    return json.loads(json.dumps({
        "settings": settings.model_dump(mode="json"), "metric": metric, "mode": mode,
        "framework": plan.framework, "task": plan.config.data.task,
        "base_params": plan.config.train.params, "seed": plan.config.train.seed,
        "checkpoint_frequency": plan.report_every, "data": plan.sources,
    }, sort_keys=True, default=str))


def restore_decision(recorded: dict[str, Any] | None, wanted: dict[str, Any], *,
                     exists: bool, restorable: bool) -> Literal["restore", "new", "elsewhere"]:
    """Restore only an experiment recorded with exactly these settings; start one in a
    folder that holds none (or only our record of an attempt that never saved its
    state); anything else (other settings, or no record at all) goes elsewhere."""
    if recorded == wanted:
        return "restore" if restorable else "new"
    return "elsewhere" if exists else "new"


def choose_experiment(storage: Path, name: str, wanted: dict[str, Any],
                      can_restore: Callable[[Path], bool]) -> tuple[str, bool]:
    """(experiment name, whether to restore it) under ``storage``."""
    digest = hashlib.sha256(json.dumps(wanted, sort_keys=True).encode()).hexdigest()[:10]
    candidates = [name, f"{name}-s{digest}"]
    for candidate in candidates:
        path = storage / candidate
        record = path / SETTINGS_FILE
        recorded = json.loads(record.read_text()) if record.exists() else None
        decision = restore_decision(recorded, wanted, exists=path.exists(),
                                    restorable=can_restore(path))
        if decision != "elsewhere":
            return candidate, decision == "restore"
        log.warning("tuning %s: %s holds an experiment with other settings (search space, "
                    "trials, scheduler, params or data); not restoring it", name, path)
    raise RaymlopsError(f"tuning {name}: {storage / candidates[-1]} holds an experiment "
                        "with other settings; remove it to start the search again")


def run_tuning(plan: Plan, *, name: str, settings: TuneSettings, metric: str,
               mode: str) -> TuneOutcome:
    from ray import tune
    from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY, TuneReportCallback

    base = dict(plan.config.train.params)
    wanted = tune_settings(plan, settings, metric, mode)
    name, restore = choose_experiment(plan.storage, name, wanted,
                                      lambda path: tune.Tuner.can_restore(str(path)))
    trials_storage = plan.storage / f"{name}-trials"

    def trial(params: dict[str, Any]) -> None:
        trial_id = tune.get_context().get_trial_id()
        trainer = plan.trainer(f"{name}-{trial_id}", {**base, **params}, storage=trials_storage,
                               callbacks=[TuneReportCallback()])
        trainer.fit()

    # The trial function only drives its trainer, whose workers hold the CPUs; Tune
    # refuses an empty request, so the driver asks for a sliver of one.
    trainable = tune.with_resources(trial, {"CPU": 0.01})
    path = plan.storage / name
    if restore:
        log.info("tuning %s: restoring the experiment at %s (same settings); finished "
                 "trials are kept", name, path)
        tuner = tune.Tuner.restore(str(path), trainable=trainable, resume_errored=True)
    else:
        path.mkdir(parents=True, exist_ok=True)
        (path / SETTINGS_FILE).write_text(json.dumps(wanted, indent=1, sort_keys=True))
        tuner = tune.Tuner(
            trainable, param_space=search_space(settings.search_space),
            tune_config=tune.TuneConfig(
                metric=metric, mode=mode, num_samples=settings.num_samples,
                max_concurrent_trials=settings.max_concurrent,
                scheduler=_scheduler(settings, plan)),
            run_config=tune.RunConfig(name=name, storage_path=str(plan.storage)))
    try:
        grid = tuner.fit()
    except Exception as exc:
        raise training_failure(exc, what=f"tuning {name}") from exc
    records = _records(grid, metric)
    finished = [r for r in records if r.error is None and metric in r.last]
    if not finished:
        failed: list[BaseException | str] = [
            e for e in (grid[i].error for i in range(len(grid))) if e is not None]
        if records and len(failed) == len(records):
            raise trials_failure(failed, what=f"tuning {name}")
        errors = "; ".join(f"{r.trial_id}: {r.error}" for r in records if r.error)
        raise RaymlopsError(f"tuning {name}: no trial reported {metric!r}"
                            + (f" ({errors})" if errors else "")
                            + "; check train.tune.metric and the trials' logs")
    best = grid.get_best_result(metric=metric, mode=mode, scope="last")
    checkpoint = (best.metrics or {}).get(CHECKPOINT_PATH_KEY)
    if not checkpoint:
        raise RaymlopsError(f"tuning {name}: the best trial left no checkpoint")
    best_params = {**base, **dict(best.config or {})}
    best_metrics = dict(best.metrics or {})
    for record in records:
        log.info("tuning %s: trial %s %s %s=%s params=%s", name, record.trial_id,
                 record.status, metric, record.last.get(metric), record.params)
    log.info("tuning %s: best trial %s with %s=%.5f (%s); params %s", name, _trial_id(best),
             metric, best_metrics[metric], mode, best_params)
    return TuneOutcome(best_trial=_trial_id(best), best_params=best_params,
                       checkpoint_dir=Path(checkpoint), metric=metric, mode=mode,
                       trials=records, name=name)
