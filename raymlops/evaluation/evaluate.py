"""Evaluate: score the holdout split with the logged model on Ray Data, then apply gates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from raymlops._internal.io import read_parquet_dir
from raymlops.config import PipelineConfig
from raymlops.data.rules import LABEL
from raymlops.evaluation import gates, metrics

SCORE = "_score"


class EvaluationResult(BaseModel):
    metrics: dict[str, float]
    slices: dict[str, dict[str, dict[str, float]]]
    gate_passed: bool
    gate_reasons: list[str]
    report: str
    rows: int


class Scorer:
    """Actor-side batch scorer: loads the MLflow model once per actor."""

    def __init__(self, model_uri: str, tracking_uri: str, keep: list[str]) -> None:
        import mlflow

        mlflow.set_tracking_uri(tracking_uri)
        self.model = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
        self.keep = keep

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        out = batch[[LABEL, *self.keep]].copy()
        out[SCORE] = self.model.predict_frame(batch)
        return out


def evaluate(config: PipelineConfig, *, test_dir: Path, model_uri: str, tracking_uri: str,
             run_dir: Path) -> EvaluationResult:
    sensitive = list(config.data.sensitive)
    from ray.data import ActorPoolStrategy

    scored = read_parquet_dir(test_dir).map_batches(
        Scorer, fn_constructor_kwargs={"model_uri": model_uri, "tracking_uri": tracking_uri,
                                       "keep": sensitive},
        batch_format="pandas", compute=ActorPoolStrategy(size=1), num_cpus=0.5,
    ).to_pandas()
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
