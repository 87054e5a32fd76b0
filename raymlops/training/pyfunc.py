"""The model as MLflow stores it: fitted feature transformations bundled with the model.

``RaymlopsModel`` takes raw input columns (the same ones the training table had), so a
model loaded with ``mlflow.pyfunc.load_model`` or served by ``mlflow models serve``
applies exactly the transformations fitted at training time. The ``model`` artifact is
a folder: ``model.ubj`` for XGBoost, ``model.pt`` + ``model.json`` for the torch MLP.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from raymlops.features import FittedFeatures

XGBOOST_FILE = "model.ubj"


class RaymlopsModel(PythonModel):
    """Raw rows in; probability of the positive class (classification) or value out."""

    features: FittedFeatures
    meta: dict[str, Any]

    def load_context(self, context: Any) -> None:
        artifacts = context.artifacts
        model = Path(artifacts["model"]) if "model" in artifacts else \
            Path(artifacts["booster"]).parent  # models logged before the torch MLP existed
        self.load_from(Path(artifacts["features"]), model, Path(artifacts["meta"]))

    def load_from(self, features: Path, model_dir: Path, meta: Path) -> RaymlopsModel:
        self.features = FittedFeatures.load(features)
        self.meta = json.loads(meta.read_text())
        self.framework = self.meta.get("framework", "xgboost")
        if self.framework == "torch":
            import torch

            from raymlops.training.torch_model import load_model

            torch.set_num_threads(1)
            self.net, self.spec = load_model(model_dir)
        else:
            import xgboost

            self.booster = xgboost.Booster()
            self.booster.load_model(str(model_dir / XGBOOST_FILE))
            # a booster trained with device=cuda predicts on CPU in replicas and pyfunc
            self.booster.set_param({"nthread": 1, "device": "cpu"})
        return self

    @property
    def input_columns(self) -> list[str]:
        return self.features.input_columns

    @property
    def iteration_range(self) -> tuple[int, int] | None:
        """XGBoost trees to predict with: up to the best iteration when training stopped
        early (what evaluation measured and the gates judged), else all of them."""
        best = self.meta.get("best_iteration")
        return None if best is None else (0, int(best) + 1)

    def predict_frame(self, frame: pd.DataFrame, *, raw: bool) -> np.ndarray:
        """Scores for rows: ``raw=True`` for rows as a client or a fresh table has them
        (normalized and PII-protected here; a value that cannot be normalized raises
        ``ValueError`` naming the column), ``raw=False`` for rows the pipeline normalized."""
        return self.predict_normalized(self.normalize_input(frame, raw=raw))

    def normalize_input(self, frame: pd.DataFrame, *, raw: bool) -> pd.DataFrame:
        """The model's inputs of ``frame``, normalized (and PII-protected when ``raw``);
        a raw value that cannot be normalized raises ``ValueError`` naming the column."""
        normalized = self.features.normalize(frame, raw=raw)
        if raw and normalized.problems:
            problem = normalized.problems[0]
            raise ValueError(f"column {problem.column!r}: {problem.message(frame)} "
                             f"(row {problem.first_row()})")
        return normalized.frame

    def predict_normalized(self, frame: pd.DataFrame) -> np.ndarray:
        numeric, codes = self.features.encode_normalized(frame)
        if self.framework == "torch":
            from raymlops.training.torch_loop import tensor_inputs
            from raymlops.training.torch_model import predict

            return predict(self.net, self.spec, *tensor_inputs(numeric, codes))
        matrix = self.features.onehot(numeric, codes)
        kwargs = {"iteration_range": self.iteration_range} if self.iteration_range else {}
        return np.asarray(self.booster.inplace_predict(matrix, **kwargs), dtype=np.float64)

    @property
    def threshold(self) -> float | None:
        """The decision threshold chosen on the validation split (classification)."""
        chosen = self.meta.get("threshold") or {}
        return None if chosen.get("value") is None else float(chosen["value"])

    def decide(self, scores: np.ndarray) -> np.ndarray:
        return (np.asarray(scores) >= (self.threshold if self.threshold is not None
                                       else 0.5)).astype(int)

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> np.ndarray:
        """Scores, or with ``params={"output": "decision"}`` the 0/1 decisions at the
        model's threshold."""
        scores = self.predict_frame(pd.DataFrame(model_input), raw=True)
        if (params or {}).get("output") == "decision":
            return self.decide(scores)
        return scores
