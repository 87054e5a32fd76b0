"""Evaluate: score the holdout split with the logged model on Ray Data, then apply gates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from raymlops._internal.io import count_rows, read_parquet_dir
from raymlops.config import PipelineConfig
from raymlops.evaluation import gates, metrics
from raymlops.names import LABEL, SCORE

#: Holdout splits up to this many rows are scored in the driver, larger ones on Ray Data.
LOCAL_ROWS = 200_000


class EvaluationResult(BaseModel):
    metrics: dict[str, float]
    slices: dict[str, dict[str, dict[str, float]]]
    gate_passed: bool
    gate_reasons: list[str]
    report: str
    rows: int


class Scorer:
    """Actor-side batch scorer: loads the MLflow model once per actor.

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
        out[SCORE] = self.model.predict_frame(batch, raw=self.raw)
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


def evaluate(config: PipelineConfig, *, test_dir: Path, model_uri: str, tracking_uri: str,
             run_dir: Path) -> EvaluationResult:
    sensitive = list(config.data.sensitive)
    if 0 < count_rows(test_dir) <= LOCAL_ROWS:
        # A small holdout is scored in this process: starting a Ray Data actor that loads
        # the model costs about 5 s a run on 2 cores, more than scoring takes.
        scored = Scorer(model_uri, tracking_uri, sensitive)(
            pd.read_parquet(test_dir).reset_index(drop=True))
    else:
        scored = score_table(read_parquet_dir(test_dir), model_uri=model_uri,
                             tracking_uri=tracking_uri, keep=sensitive, raw=False)
    y = scored[LABEL].to_numpy(dtype=np.float64)
    score = scored[SCORE].to_numpy(dtype=np.float64)
    overall = metrics.compute(config.data.task, y, score)
    by_group = metrics.slices(config.data.task, scored, sensitive, label=LABEL, score=SCORE)
    verdict = gates.decide(config.gates, overall)
    report: dict[str, Any] = {"rows": len(scored), "metrics": overall, "slices": by_group,
                              "gate": verdict.model_dump()}
    path = run_dir / "reports" / "evaluation.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    return EvaluationResult(metrics=overall, slices=by_group, gate_passed=verdict.passed,
                            gate_reasons=verdict.reasons, report=str(path), rows=len(scored))
