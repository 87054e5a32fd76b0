"""Evaluate: score the holdout split, measure, compare with the champion, decide the gates.

The candidate is scored on the holdout split (in the driver for a small split, on Ray
Data otherwise), at the decision threshold it chose on its validation split. The
current champion (the ``champion`` alias of ``deploy.name``), if there is one, is scored
on the very same rows, so a champion-relative rule compares like with like. The report
holds the metrics, slices, fairness per sensitive column, the curves, the gate verdict
rule by rule, and batch-scoring throughput; the model card renders it as HTML.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from raymlops._internal.io import count_rows, read_parquet_dir
from raymlops.config import PipelineConfig
from raymlops.evaluation import behaviour, curves, fairness, gates, metrics
from raymlops.names import LABEL, SCORE

log = logging.getLogger(__name__)

#: Holdout splits up to this many rows are scored in the driver, larger ones on Ray Data.
LOCAL_ROWS = 200_000
#: Rows of the holdout split the behavioural checks and importance read (a sample).
SAMPLE_ROWS = 2000


class EvaluationResult(BaseModel):
    metrics: dict[str, float]
    slices: dict[str, dict[str, dict[str, float]]]
    fairness: dict[str, Any] = {}
    threshold: dict[str, Any] = {}
    gate_passed: bool
    gate_reasons: list[str]
    rules: list[dict[str, Any]] = []
    champion: dict[str, Any] | None = None
    report: str
    card: str | None = None
    rows: int
    rows_per_s: float | None = None


class Scorer:
    """Batch scorer: loads the MLflow model once (per Ray Data actor, or in the driver).

    ``raw``: the rows are as a client or a fresh table has them, so the model's own
    normalization and PII handling apply (``raymlops evaluate``); the holdout split was
    normalized by the pipeline already.
    """

    def __init__(self, model_uri: str, tracking_uri: str, keep: list[str], *,
                 raw: bool = False) -> None:
        import mlflow

        mlflow.set_tracking_uri(tracking_uri)
        self.model = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
        self.keep = keep
        self.raw = raw

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        out = batch[[c for c in (LABEL, *self.keep) if c in batch.columns]].copy()
        normalized = self.model.normalize_input(batch, raw=self.raw)
        out[SCORE] = self.model.predict_normalized(normalized)
        if self.raw:
            # slices and groups of a fresh table are the values the model saw: its inputs
            # normalized and PII-protected as the model does it, other columns in their
            # canonical text (" North" and "north" are one slice, as on the holdout)
            from raymlops.features.normalize import canonical_categories

            for column in out.columns:
                if column in normalized.columns:
                    out[column] = normalized[column].to_numpy()
                elif column not in (LABEL, SCORE) and out[column].dtype == object:
                    out[column] = canonical_categories(out[column])[0]
        return out


def score_table(ds: Any, *, model_uri: str, tracking_uri: str, keep: list[str],
                raw: bool) -> pd.DataFrame:
    """Score a Ray Dataset with a registered model on one actor (the evaluation path)."""
    from ray.data import ActorPoolStrategy

    return ds.map_batches(
        Scorer, fn_constructor_kwargs={"model_uri": model_uri, "tracking_uri": tracking_uri,
                                       "keep": keep, "raw": raw},
        batch_format="pandas", compute=ActorPoolStrategy(size=1), num_cpus=0.5,
    ).to_pandas()


def score_split(test_dir: Path, model_uri: str, tracking_uri: str,
                keep: list[str]) -> tuple[pd.DataFrame, float]:
    """(label, kept columns and score per row; seconds the scoring took)."""
    start = time.perf_counter()
    if 0 < count_rows(test_dir) <= LOCAL_ROWS:
        # A small holdout is scored in this process: starting a Ray Data actor that loads
        # the model costs about 5 s a run on 2 cores, more than scoring takes.
        frame = pd.read_parquet(test_dir).reset_index(drop=True)
        scorer = Scorer(model_uri, tracking_uri, keep)
        start = time.perf_counter()
        return scorer(frame), time.perf_counter() - start
    scored = score_table(read_parquet_dir(test_dir), model_uri=model_uri,
                         tracking_uri=tracking_uri, keep=keep, raw=False)
    return scored, time.perf_counter() - start


def batch_latency(model: Any, rows: pd.DataFrame, sizes: tuple[int, ...] = (1, 100, 1000),
                  repeats: int = 5) -> dict[str, float]:
    """Median milliseconds to score one batch of each size in this process (the model
    loaded; normalized rows), next to the split's throughput."""
    out: dict[str, float] = {}
    for size in sizes:
        if len(rows) == 0:
            break
        batch = rows.iloc[np.arange(size) % len(rows)]
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model.predict_normalized(batch)
            times.append((time.perf_counter() - start) * 1000)
        out[f"batch_{size}"] = float(np.median(times))
    return out


def load(model_uri: str, tracking_uri: str) -> Any:
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    return mlflow.pyfunc.load_model(model_uri).unwrap_python_model()


def _sample(test_dir: Path) -> pd.DataFrame:
    frame = pd.read_parquet(test_dir)
    if len(frame) > SAMPLE_ROWS:
        frame = frame.sample(SAMPLE_ROWS, random_state=0)
    return frame.reset_index(drop=True)


def evaluate(config: PipelineConfig, *, test_dir: Path, model_uri: str, tracking_uri: str,
             run_dir: Path, champion: dict[str, str] | None = None) -> EvaluationResult:
    """``champion``: ``{"version", "model_uri"}`` of the model serving today, if any."""
    task, data = config.data.task, config.data
    model = load(model_uri, tracking_uri)
    fitted = model.features
    threshold = dict(model.meta.get("threshold") or {"value": metrics.THRESHOLD,
                                                     "reason": "no threshold recorded"})
    expression_columns = [metrics.parse_slice(e)[0] for e in config.evaluation.slices]
    keep = list(dict.fromkeys([*data.sensitive, *fitted.categorical, *expression_columns]))
    scored, seconds = score_split(test_dir, model_uri, tracking_uri, keep)
    y = scored[LABEL].to_numpy(dtype=np.float64)
    score = scored[SCORE].to_numpy(dtype=np.float64)
    cut, bins = float(threshold["value"]), config.evaluation.calibration_bins
    overall = metrics.compute(task, y, score, cut, bins)
    by_slice = metrics.slices(task, scored, list(dict.fromkeys([*fitted.categorical,
                                                                *data.sensitive])),
                              label=LABEL, score=SCORE, threshold=cut,
                              expressions=config.evaluation.slices)
    fair: dict[str, Any] = {}
    plotted: dict[str, Any] = {}
    if task == "classification":
        decisions = (score >= cut).astype(int)
        fair = fairness.fairness(y, decisions, scored, list(data.sensitive),
                                 config.evaluation.fairness_min_rows)
        plotted = {"roc": curves.roc_curve(y, score), "pr": curves.pr_curve(y, score),
                   "calibration": curves.calibration(y, score, bins),
                   "confusion": curves.confusion(y.astype(int), decisions)}
    champion_metrics, label = None, "none"
    if champion is not None:
        label = f"version {champion['version']}"
        try:
            champ, _ = score_split(test_dir, champion["model_uri"], tracking_uri, [])
            champ_model = load(champion["model_uri"], tracking_uri)
            champ_cut = float((champ_model.meta.get("threshold") or {}).get(
                "value", metrics.THRESHOLD))
            champion_metrics = metrics.compute(task, champ[LABEL].to_numpy(dtype=np.float64),
                                               champ[SCORE].to_numpy(dtype=np.float64),
                                               champ_cut, bins)
        except Exception as exc:  # noqa: BLE001 - a champion that cannot score fails rules
            log.warning("the champion %s cannot score this holdout: %s", label, exc)
            champion_metrics = {}
            label += f", which cannot score this holdout ({type(exc).__name__})"
    sample = _sample(test_dir)
    normalized = fitted.normalize(sample, raw=False).frame
    checks = [behaviour.invariance(model, normalized, c) for c in config.gates.invariance]
    checks += [behaviour.direction(model, normalized, c) for c in config.gates.direction]
    if config.gates.slices is not None:
        checks += behaviour.slice_minimums(by_slice, config.gates.slices)
    verdict = gates.decide(config.gates, overall, champion=champion_metrics,
                           champion_label=label, fairness=fair, behaviour=checks)
    rows_per_s = len(scored) / seconds if seconds > 0 else None
    latency = batch_latency(model, normalized)
    report: dict[str, Any] = {
        "task": task, "rows": len(scored), "metrics": overall, "threshold": threshold,
        "slices": by_slice, "fairness": fair, "curves": plotted,
        "gate": {"passed": verdict.passed, "reasons": verdict.reasons,
                 "rules": [r.model_dump() for r in verdict.rules]},
        "champion": None if champion is None else {**champion, "metrics": champion_metrics},
        "seconds_scoring": seconds, "rows_per_s": rows_per_s, "latency_ms": latency,
    }
    path = run_dir / "reports" / "evaluation.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str))
    return EvaluationResult(
        metrics=overall, slices=by_slice, fairness=fair, threshold=threshold,
        gate_passed=verdict.passed, gate_reasons=verdict.reasons,
        rules=[r.model_dump() for r in verdict.rules],
        champion=report["champion"], report=str(path), rows=len(scored), rows_per_s=rows_per_s)
