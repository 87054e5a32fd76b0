"""Features: split deterministically, fit transformations in one pass, apply them anywhere.

``FittedFeatures`` holds everything learned from the training split (means, scales,
category vocabularies). Its ``transform`` is the one function used by Ray Data during
training, by evaluation, and by every Serve replica, so train and serve cannot skew.
Fitting reads the data once: each batch yields partial sums and category counts,
which the driver merges (much faster than one aggregation pass per statistic).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from raymlops._internal.io import count_rows, read_parquet_dir, write_parquet_atomic
from raymlops.config import SplitConfig

MISSING = "__missing__"
UNKNOWN = "__unknown__"
MAX_CATEGORIES = 50
SPLIT = "_split"


class PreprocessResult(BaseModel):
    train: str
    valid: str
    test: str
    features: str
    rows: dict[str, int]
    feature_names: list[str]


# -- splitting --------------------------------------------------------------------------


class SplitAssigner:
    """Assigns each row to train/valid/test from a hash of its id (or of the whole row).

    The same row always lands in the same split, whatever the file layout or order.
    """

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


# -- fitting ----------------------------------------------------------------------------


@dataclass
class FittedFeatures:
    """Learned transformation parameters; JSON round-trips exactly."""

    numeric: list[str]
    categorical: list[str]
    means: dict[str, float] = field(default_factory=dict)
    scales: dict[str, float] = field(default_factory=dict)
    indicators: list[str] = field(default_factory=list)
    vocab: dict[str, list[str]] = field(default_factory=dict)
    #: PII columns generalized at ingest: raw values are generalized again at serving.
    generalized: list[str] = field(default_factory=list)
    #: Optional clipping bounds per numeric column, applied before imputation and scaling.
    clip: dict[str, list[float | None]] = field(default_factory=dict)

    @property
    def input_columns(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    @property
    def feature_names(self) -> list[str]:
        names = [_safe(c) for c in self.numeric]
        names += [_safe(f"{c}__missing") for c in self.indicators]
        for col in self.categorical:
            names += [_safe(f"{col}={v}") for v in [*self.vocab[col], UNKNOWN]]
        return names

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Raw columns in, float32 feature matrix out (one-hot categories). Extra columns
        are ignored."""
        numeric, codes = self.encode(frame)
        blocks = [numeric]
        for j, col in enumerate(self.categorical):
            onehot = np.zeros((len(frame), len(self.vocab[col]) + 1), dtype=np.float32)
            onehot[np.arange(len(frame)), codes[:, j]] = 1.0
            blocks.append(onehot)
        return np.hstack(blocks).astype(np.float32, copy=False)

    @property
    def numeric_width(self) -> int:
        """Columns of ``encode``'s numeric block: the numbers, then missing indicators."""
        return len(self.numeric) + len(self.indicators)

    @property
    def cardinalities(self) -> list[int]:
        """Codes per categorical column: its vocabulary plus the unknown bucket."""
        return [len(self.vocab[c]) + 1 for c in self.categorical]

    def encode(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Raw columns in; (numeric block, category codes) out.

        The numeric block is clipped, imputed and scaled, with the missing indicators
        after it; a category's code is its vocabulary index, with ``len(vocab)`` for the
        unknown bucket. ``transform`` one-hot encodes the codes (XGBoost); the torch MLP
        feeds them to embeddings. Both come from this one function.
        """
        n = len(frame)
        if self.generalized:
            from raymlops.data.privacy import generalize

            frame = frame.assign(**{c: generalize(frame[c]) for c in self.generalized
                                    if c in frame.columns})
        blocks: list[np.ndarray] = []
        if self.numeric:
            raw = np.column_stack([
                pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
                for c in self.numeric
            ])
            for j, column in enumerate(self.numeric):
                if column in self.clip:
                    low, high = self.clip[column]
                    raw[:, j] = np.clip(raw[:, j], -np.inf if low is None else low,
                                        np.inf if high is None else high)
            means = np.array([self.means[c] for c in self.numeric])
            scales = np.array([self.scales[c] for c in self.numeric])
            missing = np.isnan(raw)
            filled = np.where(missing, means, raw)
            blocks.append((filled - means) / scales)
            if self.indicators:
                idx = [self.numeric.index(c) for c in self.indicators]
                blocks.append(missing[:, idx].astype("float64"))
        numeric = (np.hstack(blocks) if blocks else np.zeros((n, 0))).astype(np.float32)
        codes = np.zeros((n, len(self.categorical)), dtype=np.int64)
        for j, col in enumerate(self.categorical):
            vocab = self.vocab[col]
            values = category_strings(frame[col])
            lookup = {v: i for i, v in enumerate(vocab)}
            codes[:, j] = np.fromiter((lookup.get(v, len(vocab)) for v in values),
                                      dtype=np.int64, count=n)
        return numeric, codes

    def transform_frame(self, frame: pd.DataFrame, keep: list[str] | None = None) -> pd.DataFrame:
        out = pd.DataFrame(self.transform(frame), columns=self.feature_names, index=frame.index)
        for col in keep or []:
            out[col] = frame[col].to_numpy()
        return out

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FittedFeatures:
        return cls(**json.loads(text))

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json())
        return path

    @classmethod
    def load(cls, path: Path) -> FittedFeatures:
        return cls.from_json(path.read_text())


def category_strings(series: pd.Series) -> np.ndarray:
    """A categorical column as Python strings, with every kind of missing as ``MISSING``.

    ``Series.map`` skips missing values of Arrow-backed columns (what ``read_parquet``
    gives for large strings), which left ``<NA>`` to fall into the unknown bucket while
    a JSON request's ``null`` became ``MISSING``: the same row scored differently.
    """
    values = series.astype(object)
    return values.where(~values.isna(), MISSING).astype(str).to_numpy(dtype=object)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_=.\-]", "_", name)


class PartialStats:
    """Batch function: one row of JSON partial statistics per batch (merged by the driver).

    Numbers: [count, sum, sum of squares, nulls, min, max]; categories: value counts.
    """

    def __init__(self, numeric: list[str], categorical: list[str],
                 clip: dict[str, list[float | None]] | None = None) -> None:
        self.numeric = numeric
        self.categorical = categorical
        self.clip = clip or {}

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        stats: dict[str, Any] = {"num": {}, "cat": {}}
        for col in self.numeric:
            values = pd.to_numeric(batch[col], errors="coerce").to_numpy(dtype="float64",
                                                                         na_value=np.nan)
            if col in self.clip:
                bound_low, bound_high = self.clip[col]
                values = np.clip(values, -np.inf if bound_low is None else bound_low,
                                 np.inf if bound_high is None else bound_high)
            ok = values[~np.isnan(values)]
            low, high = (float(ok.min()), float(ok.max())) if len(ok) else (None, None)
            stats["num"][col] = [len(ok), float(ok.sum()), float((ok * ok).sum()),
                                 int(len(values) - len(ok)), low, high]
        for col in self.categorical:
            counts = pd.Series(category_strings(batch[col])).value_counts()
            stats["cat"][col] = {str(k): int(v) for k, v in counts.items()}
        return pd.DataFrame({"stats": [json.dumps(stats)]})


def fit_features(train: Any, numeric: list[str], categorical: list[str],
                 clip: dict[str, list[float | None]] | None = None) -> FittedFeatures:
    """Fit on a Ray Dataset in one pass of per-batch partial statistics.

    With ``clip``, the statistics are those of the clipped values, as the transform sees them.
    """
    stats = PartialStats(numeric, categorical, clip or {})
    parts = train.map_batches(stats, batch_format="pandas").to_pandas()
    fitted = merge_partials(parts["stats"], numeric, categorical)
    fitted.clip = dict(clip or {})
    return fitted


def fit_frames(frames: Iterable[pd.DataFrame], numeric: list[str], categorical: list[str],
               clip: dict[str, list[float | None]] | None = None) -> FittedFeatures:
    """The same fit over in-memory batches (no Ray): what ``fit_features`` does per block."""
    partials = PartialStats(numeric, categorical, clip or {})
    fitted = merge_partials([partials(f)["stats"].iloc[0] for f in frames], numeric,
                            categorical)
    fitted.clip = dict(clip or {})
    return fitted


def merge_partials(blobs: Iterable[str], numeric: list[str],
                   categorical: list[str]) -> FittedFeatures:
    sums: dict[str, list[float]] = {c: [0, 0.0, 0.0, 0] for c in numeric}
    counts: dict[str, Counter[str]] = {c: Counter() for c in categorical}
    for blob in blobs:
        stats = json.loads(blob)
        for col, (n, s, sq, nulls, *_) in stats["num"].items():
            acc = sums[col]
            acc[0] += n
            acc[1] += s
            acc[2] += sq
            acc[3] += nulls
        for col, value_counts in stats["cat"].items():
            counts[col].update(value_counts)
    fitted = FittedFeatures(numeric=list(numeric), categorical=list(categorical))
    for col, (n, s, sq, nulls) in sums.items():
        mean = s / n if n else 0.0
        var = max(sq / n - mean * mean, 0.0) if n else 0.0
        fitted.means[col] = mean
        fitted.scales[col] = math.sqrt(var) if var > 1e-24 else 1.0
        if nulls:
            fitted.indicators.append(col)
    for col, value_counts in counts.items():
        ranked = sorted(value_counts.items(), key=lambda kv: (-kv[1], kv[0]))
        fitted.vocab[col] = [v for v, _ in ranked[:MAX_CATEGORIES]]
    return fitted


def preprocess(*, accepted: Path, split: SplitConfig, id_column: str | None,
               numeric: list[str], categorical: list[str], generalized: list[str],
               clip: dict[str, list[float | None]], run_dir: Path) -> PreprocessResult:
    from raymlops.data.rules import LABEL

    assigned = read_parquet_dir(accepted).map_batches(
        SplitAssigner(split, id_column, exclude=[LABEL]), batch_format="pandas"
    ).materialize()
    paths: dict[str, Path] = {}
    rows: dict[str, int] = {}
    for name in ("train", "valid", "test"):
        part = assigned.map_batches(_only(name), batch_format="pandas")
        paths[name] = write_parquet_atomic(part, run_dir / "data" / name)
        rows[name] = count_rows(paths[name])
    fitted = fit_features(read_parquet_dir(paths["train"]), numeric, categorical,
                          {c: b for c, b in clip.items() if c in numeric})
    fitted.generalized = [c for c in generalized if c in fitted.input_columns]
    features_path = fitted.save(run_dir / "features.json")
    return PreprocessResult(train=str(paths["train"]), valid=str(paths["valid"]),
                            test=str(paths["test"]), features=str(features_path), rows=rows,
                            feature_names=fitted.feature_names)
