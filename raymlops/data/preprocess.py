"""Preprocess: split deterministically, then fit the features on the training split in one pass.

Rows are assigned to train/valid/test by a hash of their id (or of the whole row), so
the same row always lands in the same split whatever the file layout or order. The
fit reads the training split once: each batch yields partial statistics, which the
driver merges exactly (``raymlops.features.stats``); that is much faster than one
aggregation pass per statistic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from raymlops._internal.io import count_rows, read_parquet_dir, write_parquet_atomic
from raymlops.config import SplitConfig
from raymlops.features import FittedFeatures, PartialStats, RowSpec, merge_partials
from raymlops.names import LABEL, SPLIT


class PreprocessResult(BaseModel):
    train: str
    valid: str
    test: str
    features: str
    rows: dict[str, int]
    feature_names: list[str]


class SplitAssigner:
    """Assigns each row to train/valid/test from a hash of its id (or of the whole row)."""

    def __init__(self, split: SplitConfig, key_column: str | None, exclude: list[str]) -> None:
        self.split = split
        self.key_column = key_column
        self.exclude = exclude

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        if self.key_column is not None:
            keys: pd.Series | pd.DataFrame = batch[self.key_column].astype(str)
        else:
            keys = batch.drop(columns=[c for c in self.exclude if c in batch.columns])
            keys = keys.astype(str)
        hash_key = f"{self.split.seed:016d}"[-16:]
        hashed = pd.util.hash_pandas_object(keys, index=False, hash_key=hash_key)
        unit = hashed.to_numpy(dtype=np.uint64) / float(2**64)
        test, valid = self.split.test_fraction, self.split.valid_fraction
        out = batch.copy()
        out[SPLIT] = np.where(unit < test, "test", np.where(unit < test + valid, "valid", "train"))
        return out


def _only(name: str) -> Any:
    def pick(batch: pd.DataFrame) -> pd.DataFrame:
        return batch[batch[SPLIT] == name].drop(columns=[SPLIT])

    return pick


def fit_features(train: Any, spec: RowSpec,
                 clip: dict[str, list[float | None]] | None = None) -> FittedFeatures:
    """Fit on a Ray Dataset of normalized rows in one pass of per-batch partial statistics.

    With ``clip``, the statistics are those of the clipped values, as the transform sees them.
    """
    stats = PartialStats(spec.numeric, spec.categorical, clip or {})
    parts = train.map_batches(stats, batch_format="pandas").to_pandas()
    fitted = merge_partials(parts["stats"], spec)
    fitted.clip = dict(clip or {})
    return fitted


def preprocess(*, accepted: Path, split: SplitConfig, id_column: str | None, spec: RowSpec,
               clip: dict[str, list[float | None]], run_dir: Path) -> PreprocessResult:
    assigned = read_parquet_dir(accepted).map_batches(
        SplitAssigner(split, id_column, exclude=[LABEL]), batch_format="pandas"
    ).materialize()
    paths: dict[str, Path] = {}
    rows: dict[str, int] = {}
    for name in ("train", "valid", "test"):
        part = assigned.map_batches(_only(name), batch_format="pandas")
        paths[name] = write_parquet_atomic(part, run_dir / "data" / name)
        rows[name] = count_rows(paths[name])
    fitted = fit_features(read_parquet_dir(paths["train"]), spec,
                          {c: b for c, b in clip.items() if c in spec.numeric})
    features_path = fitted.save(run_dir / "features.json")
    return PreprocessResult(train=str(paths["train"]), valid=str(paths["valid"]),
                            test=str(paths["test"]), features=str(features_path), rows=rows,
                            feature_names=fitted.feature_names)
