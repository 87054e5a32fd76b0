"""The model as MLflow stores it: fitted feature transformations bundled with the booster.

``RaymlopsModel`` takes raw input columns (the same ones the training table had), so a
model loaded with ``mlflow.pyfunc.load_model`` or served by ``mlflow models serve``
applies exactly the transformations fitted at training time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from raymlops.data.features import FittedFeatures


class RaymlopsModel(PythonModel):
    """Raw rows in; probability of the positive class (classification) or value out."""

    features: FittedFeatures
    meta: dict[str, Any]

    def load_context(self, context: Any) -> None:
        self.load_from(Path(context.artifacts["features"]), Path(context.artifacts["booster"]),
                       Path(context.artifacts["meta"]))

    def load_from(self, features: Path, booster: Path, meta: Path) -> RaymlopsModel:
        import xgboost

        self.features = FittedFeatures.load(features)
        self.meta = json.loads(meta.read_text())
        self.booster = xgboost.Booster()
        self.booster.load_model(str(booster))
        self.booster.set_param({"nthread": 1})
        return self

    @property
    def input_columns(self) -> list[str]:
        return self.features.input_columns

    def predict_frame(self, frame: pd.DataFrame) -> np.ndarray:
        matrix = self.features.transform(frame)
        return np.asarray(self.booster.inplace_predict(matrix), dtype=np.float64)

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> np.ndarray:
        return self.predict_frame(pd.DataFrame(model_input))
