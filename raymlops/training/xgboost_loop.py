"""The XGBoost training loop that runs on each Ray Train worker.

It reports to Ray Train every ``report_every`` rounds (the checkpoint frequency) and
at the end, each time with a checkpoint: ``model.ubj``, the per-round ``history.json``
and ``state.json`` (rounds boosted, best iteration, whether it stopped early); the
driver logs that history to MLflow afterwards. A report per round would make every
round a cluster-wide barrier (DESIGN.md section 6 measured 117 s versus 15 s for one fit).

When Ray Train restarts the worker group after a failure, or a new trainer reuses the
run's name, the loop starts from the latest checkpoint: it loads the booster and its
history and boosts only the rounds that are left, none after an early stop.

Early stopping is ours, not ``xgboost.train``'s: XGBoost's callback starts counting
afresh on a continued booster, so a resumed run would boost past the point where the
uninterrupted run stopped. ``EarlyStop`` applies XGBoost's rule to the whole history,
the checkpoint's rounds included, so both stop at the same round with the same best
iteration. The booster keeps every tree; the model predicts with those up to the best
iteration, and the reports carry the metrics there (``last_*`` holds the last round's).
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from raymlops.errors import ConfigError
from raymlops.names import LABEL

MODEL_FILE = "model.ubj"
HISTORY_FILE = "history.json"
STATE_FILE = "state.json"

_DEFAULT_ROUNDS = 200

#: ``report(booster, history, state, metrics)``: one report, with a checkpoint of those.
Reporter = Callable[[Any, dict[str, Any], dict[str, Any], dict[str, Any]], None]


def xgboost_params(task: str, params: dict[str, Any], *, seed: int, use_gpu: bool,
                   nthread: int) -> tuple[dict[str, Any], int, int | None]:
    """Merge user params over defaults for the task; returns (params, rounds, early stop)."""
    user = dict(params)
    rounds = int(user.pop("num_boost_round", _DEFAULT_ROUNDS))
    early = user.pop("early_stopping_rounds", None)
    if early is not None and int(early) < 0:
        raise ConfigError(f"train.params.early_stopping_rounds: {early} is negative; give a "
                          "number of rounds (0 or none turns early stopping off)")
    base: dict[str, Any] = {
        "tree_method": "hist",
        "max_depth": 6,
        "eta": 0.1,
        "seed": seed,
        "nthread": nthread,
    }
    if task == "classification":
        base.update(objective="binary:logistic", eval_metric=["logloss", "auc"])
    else:
        base.update(objective="reg:squarederror", eval_metric=["rmse"])
    base.update(user)
    if use_gpu:
        base["device"] = "cuda"
    return base, rounds, int(early) if early else None  # 0 is off, as in xgboost.train


def frame_of(shard: Any) -> pd.DataFrame:
    if shard is None:
        return pd.DataFrame()
    batches = list(shard.iter_batches(batch_format="pandas", batch_size=None))
    return pd.concat(batches, ignore_index=True) if batches else pd.DataFrame()


def _dmatrix(frame: pd.DataFrame, features: list[str]) -> Any:
    import xgboost

    return xgboost.DMatrix(frame[features].to_numpy(np.float32),
                           label=frame[LABEL].to_numpy(), feature_names=features)


def merge_history(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Per-round history of a resumed fit: the checkpoint's rounds, then the new ones."""
    merged = {split: {m: list(v) for m, v in metrics.items()} for split, metrics in before.items()}
    for split, metrics in after.items():
        for metric, values in metrics.items():
            merged.setdefault(split, {}).setdefault(metric, []).extend(values)
    return merged


def last_values(history: dict[str, Any]) -> dict[str, float]:
    return {f"{split}_{metric}": float(values[-1])
            for split, metrics in history.items() for metric, values in metrics.items() if values}


# -- early stopping ----------------------------------------------------------------------


@dataclass
class StopState:
    """``xgboost.callback.EarlyStopping``'s rule (``min_delta`` 0) over one score series:
    the first round is the best so far; a later one is better only if strictly so; stop
    once ``rounds`` rounds have passed since the best."""

    rounds: int
    maximize: bool
    metric: str = ""
    best_iteration: int | None = None
    best_score: float | None = None
    since_best: int = 0
    seen: int = 0

    @property
    def stopped(self) -> bool:
        return self.seen > 0 and self.since_best >= self.rounds

    def update(self, score: float) -> bool:
        """Take the next round's score; True when training should stop."""
        best = self.best_score
        improved = self.seen == 0 or (best is not None and (
            score > best if self.maximize else score < best))
        if improved:
            self.best_iteration, self.best_score, self.since_best = self.seen, score, 0
        else:
            self.since_best += 1
        self.seen += 1
        return self.stopped


def replay(rounds: int, history: dict[str, Any], data: str = "valid",
           metric: str | None = None) -> StopState:
    """The stop state after the rounds in ``history``, watching XGBoost's default: the
    last metric of ``data``."""
    from raymlops.training.directions import direction

    logged = history.get(data, {})
    name = metric or (list(logged)[-1] if logged else "")
    state = StopState(rounds, maximize=direction(name) == "max", metric=name)
    for score in logged.get(name, []):
        state.update(float(score))
    return state


def early_stop_callback(rounds: int, before: dict[str, Any]) -> Any:
    """A ``TrainingCallback`` that stops as XGBoost would, seeded with the history of the
    rounds already boosted (``before``); its ``state`` is a ``StopState``."""
    import xgboost

    class EarlyStop(xgboost.callback.TrainingCallback):
        def __init__(self) -> None:
            super().__init__()
            self.state: StopState | None = None

        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            data = list(evals_log)[-1]  # XGBoost's choice: the last eval set,
            metric = list(evals_log[data])[-1]  # and its last metric
            seeded = self.state is None
            if self.state is None:
                self.state = replay(rounds, before, data, metric)
            stop = self.state.update(float(evals_log[data][metric][-1]))
            if seeded or self.state.since_best == 0:  # as XGBoost sets them, on a new best
                model.set_attr(best_iteration=str(self.state.best_iteration),
                               best_score=str(self.state.best_score))
            return stop

    return EarlyStop()


def report_values(history: dict[str, Any], stop: StopState | None) -> dict[str, float]:
    """The metrics a report carries: with early stopping, those at the best iteration so
    far (what the model predicts with) and the last round's as ``last_*``."""
    if stop is None or stop.best_iteration is None:
        return last_values(history)
    out: dict[str, float] = {}
    for split, metrics in history.items():
        for metric, values in metrics.items():
            if values:
                out[f"{split}_{metric}"] = float(values[min(stop.best_iteration,
                                                            len(values) - 1)])
                out[f"last_{split}_{metric}"] = float(values[-1])
    return out


def loop_state(booster: Any, total: int, early: int | None,
               stop: StopState | None) -> dict[str, Any]:
    """``state.json``: what a resumed loop needs to decide whether to boost again."""
    score = None if stop is None or stop.best_score is None or math.isnan(stop.best_score) \
        else stop.best_score
    return {"rounds": booster.num_boosted_rounds(), "num_boost_round": total,
            "early_stopping_rounds": early, "stopped_early": bool(stop and stop.stopped),
            "best_iteration": None if stop is None else stop.best_iteration,
            "best_score": score, "metric": f"valid_{stop.metric}" if stop else None,
            "maximize": None if stop is None else stop.maximize}


def _report_metrics(booster: Any, history: dict[str, Any], state: dict[str, Any],
                    stop: StopState | None, extra: dict[str, Any]) -> dict[str, Any]:
    metrics: dict[str, Any] = {**report_values(history, stop),
                               "rounds": booster.num_boosted_rounds(), **extra}
    if state["best_iteration"] is not None:
        metrics["best_iteration"] = int(state["best_iteration"])
        metrics["stopped_early"] = int(state["stopped_early"])
    return metrics


def _checkpoint_callback(every: int, total: int, *, early: int | None,
                         before: dict[str, Any], stopper: Any, report: Reporter) -> Any:
    import xgboost

    class ReportEvery(xgboost.callback.TrainingCallback):
        """Reports with a checkpoint every ``every`` rounds, except the last round (and
        a round where early stopping ends the fit: the final report follows)."""

        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            done = model.num_boosted_rounds()
            if done % every == 0 and done < total:
                history = merge_history(before, {s: dict(m) for s, m in evals_log.items()})
                stop = None if stopper is None else stopper.state
                state = loop_state(model, total, early, stop)
                report(model, history, state,
                       _report_metrics(model, history, state, stop, {"final": 0}))
            return False

    return ReportEvery()


# -- the fit -----------------------------------------------------------------------------


@dataclass
class Resumed:
    """What a checkpoint holds: the booster, its per-round history, its ``state.json``."""

    booster: Any = None
    history: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def rounds(self) -> int:
        return 0 if self.booster is None else int(self.booster.num_boosted_rounds())


def read_state(directory: Path) -> dict[str, Any]:
    """A checkpoint's ``state.json`` ({} for checkpoints written before it existed)."""
    path = directory / STATE_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def load_checkpoint(directory: Path) -> Resumed:
    import xgboost

    booster = xgboost.Booster()
    booster.load_model(str(directory / MODEL_FILE))
    return Resumed(booster, json.loads((directory / HISTORY_FILE).read_text()),
                   read_state(directory))


def save_checkpoint(directory: Path, booster: Any, history: dict[str, Any],
                    state: dict[str, Any]) -> None:
    booster.save_model(str(directory / MODEL_FILE))
    (directory / HISTORY_FILE).write_text(json.dumps(history))
    (directory / STATE_FILE).write_text(json.dumps(state))


def fit_booster(train: pd.DataFrame, valid: pd.DataFrame | None, params: dict[str, Any],
                rounds: int, early_stopping: int | None = None, *,
                callbacks: list[Any] | None = None,
                start: Any = None) -> tuple[Any, dict[str, Any]]:
    """Plain ``xgboost.train`` on feature frames with a ``_label`` column.

    ``start`` is a booster to continue; ``rounds`` counts the rounds still to boost.
    ``early_stopping`` adds a fresh ``early_stop_callback`` (with a validation set); a
    resumed fit passes one seeded with the earlier rounds in ``callbacks`` instead.
    """
    import xgboost

    features = [c for c in train.columns if c != LABEL]
    evals = [(_dmatrix(train, features), "train")]
    if valid is not None and len(valid):
        evals.append((_dmatrix(valid, features), "valid"))
    if early_stopping and len(evals) > 1:
        callbacks = [early_stop_callback(early_stopping, {}), *(callbacks or [])]
    history: dict[str, Any] = {}
    booster = xgboost.train(params, evals[0][0], num_boost_round=rounds, evals=evals,
                            evals_result=history, verbose_eval=False, xgb_model=start,
                            callbacks=callbacks or None)
    return booster, history


def fit_resumable(train: pd.DataFrame, valid: pd.DataFrame | None, config: dict[str, Any],
                  resumed: Resumed, report: Reporter) -> dict[str, Any]:
    """Boost what is left after ``resumed`` (nothing after an early stop), reporting
    every ``report_every`` rounds and once at the end; returns the final metrics."""
    total = int(config["rounds"])
    has_valid = valid is not None and len(valid) > 0
    early = config.get("early_stopping") if has_valid else None
    before = resumed.history
    stop = replay(int(early), before) if early else None
    finished = stop is not None and (bool(resumed.state.get("stopped_early")) or stop.stopped)
    rounds = 0 if finished else max(0, total - resumed.rounds)
    stopper = early_stop_callback(int(early), before) if early else None
    every = int(config.get("report_every") or 0)
    callbacks = [c for c in (stopper,) if c is not None]  # first: a stop skips the report
    if every:
        callbacks.append(_checkpoint_callback(every, total, early=early, before=before,
                                              stopper=stopper, report=report))
    clock = time.perf_counter()
    booster = resumed.booster
    if rounds or booster is None:
        booster, after = fit_booster(train, valid, config["params"], rounds,
                                     callbacks=callbacks, start=booster)
        history = merge_history(before, after)
        if stopper is not None and stopper.state is not None:
            stop = stopper.state
    else:
        history = before
    if stop is not None and stop.best_iteration is not None:
        booster.set_attr(best_iteration=str(stop.best_iteration),
                         best_score=str(stop.best_score))
    state = loop_state(booster, total, early, stop)
    extra = {"final": 1, "resumed_from_round": resumed.rounds,
             "seconds_fit": time.perf_counter() - clock, **config.get("timings", {})}
    metrics = _report_metrics(booster, history, state, stop, extra)
    report(booster, history, state, metrics)
    return metrics


def _ray_report(booster: Any, history: dict[str, Any], state: dict[str, Any],
                metrics: dict[str, Any]) -> None:
    """One report to Ray Train, from every worker; rank 0 attaches the checkpoint."""
    import ray.train

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = None
        if ray.train.get_context().get_world_rank() == 0:
            save_checkpoint(Path(tmp), booster, history, state)
            checkpoint = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report(metrics, checkpoint=checkpoint)


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train entry point: read this worker's shards, fit (resuming), report."""
    import ray.train

    start = time.perf_counter()
    train = frame_of(ray.train.get_dataset_shard("train"))
    valid = frame_of(ray.train.get_dataset_shard("valid"))
    seconds_data = time.perf_counter() - start
    resumed = Resumed()
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            resumed = load_checkpoint(Path(directory))
    fit_resumable(train, valid, {**config, "timings": {"seconds_data": seconds_data}},
                  resumed, _ray_report)
