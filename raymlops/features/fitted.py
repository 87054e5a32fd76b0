"""The fitted features: what training learned about the inputs, applied the same way everywhere.

``FittedFeatures`` holds the row normalization (``RowSpec``) and what was fitted on the
training split (means, scales, missing indicators, category vocabularies, optional
clipping). ``encode`` is the one function that turns rows into model inputs, used by
Ray Data during training, by evaluation, by the pyfunc model and by every Serve replica.
It takes ``raw=True`` for rows as a client or a fresh table has them (normalized and
PII-protected here) and ``raw=False`` for rows the pipeline already normalized.

Feature names are unique and traceable: ``sources`` maps each name back to its column
and category value (two values that sanitize alike get a short hash suffix).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from raymlops.features.normalize import Normalized, RowSpec
from raymlops.features.stats import MISSING, PartialStats, category_strings, merge_stats

UNKNOWN = "__unknown__"
MAX_CATEGORIES = 50


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_=.\-]", "_", name)


def feature_names(numeric: list[str], indicators: list[str],
                  vocab: dict[str, list[str]], categorical: list[str]) -> tuple[
                      list[str], dict[str, dict[str, Any]]]:
    """Unique, XGBoost-safe names for the matrix columns, and where each comes from."""
    wanted: list[tuple[str, dict[str, Any]]] = [
        (c, {"column": c, "kind": "number"}) for c in numeric]
    wanted += [(f"{c}__missing", {"column": c, "kind": "missing_indicator"})
               for c in indicators]
    for col in categorical:
        wanted += [(f"{col}={v}", {"column": col, "kind": "category", "value": v})
                   for v in vocab[col]]
        wanted.append((f"{col}={UNKNOWN}", {"column": col, "kind": "unknown"}))
    safe = [_safe(name) for name, _ in wanted]
    clashes = {s for s in safe if safe.count(s) > 1}
    names, sources = [], {}
    for (original, source), candidate in zip(wanted, safe, strict=True):
        name = candidate
        if name in clashes:
            name = f"{name}__{hashlib.sha1(original.encode()).hexdigest()[:6]}"  # noqa: S324
        names.append(name)
        sources[name] = source
    return names, sources


@dataclass
class FittedFeatures:
    """Learned transformation parameters; JSON round-trips exactly."""

    spec: RowSpec
    means: dict[str, float] = field(default_factory=dict)
    scales: dict[str, float] = field(default_factory=dict)
    indicators: list[str] = field(default_factory=list)
    vocab: dict[str, list[str]] = field(default_factory=dict)
    #: Optional clipping bounds per numeric column, applied before imputation and scaling.
    clip: dict[str, list[float | None]] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    _key: bytes | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.names:
            self.names, self.sources = feature_names(self.numeric, self.indicators, self.vocab,
                                                     self.categorical)

    # -- shape ---------------------------------------------------------------------------
    @property
    def numeric(self) -> list[str]:
        return self.spec.numeric

    @property
    def categorical(self) -> list[str]:
        return self.spec.categorical

    @property
    def input_columns(self) -> list[str]:
        return self.spec.input_columns

    @property
    def feature_names(self) -> list[str]:
        return list(self.names)

    @property
    def numeric_width(self) -> int:
        """Columns of ``encode``'s numeric block: the numbers, then missing indicators."""
        return len(self.numeric) + len(self.indicators)

    @property
    def cardinalities(self) -> list[int]:
        """Codes per categorical column: its vocabulary plus the unknown bucket."""
        return [len(self.vocab[c]) + 1 for c in self.categorical]

    # -- the PII key of hashed inputs ----------------------------------------------------
    def load_key(self) -> FittedFeatures:
        """Resolve the HMAC key that raw rows' hashed input columns need (serving, pyfunc)."""
        if self.spec.hashed and self._key is None:
            from raymlops.features.pii import resolve_key

            self._key = resolve_key(self.spec.pii_key or {})
        return self

    def with_key(self, key: bytes | None) -> FittedFeatures:
        self._key = key
        return self

    # -- applying ------------------------------------------------------------------------
    def normalize(self, frame: pd.DataFrame, *, raw: bool) -> Normalized:
        if raw and self.spec.hashed and self._key is None:
            self.load_key()
        return self.spec.normalize(frame, protect=raw, key=self._key)

    def encode(self, frame: pd.DataFrame, *, raw: bool) -> tuple[np.ndarray, np.ndarray]:
        """Rows in; (numeric block, category codes) out.

        The numeric block is clipped, imputed and scaled, with the missing indicators
        after it; a category's code is its vocabulary index, with ``len(vocab)`` for the
        unknown bucket. ``transform`` one-hot encodes the codes (XGBoost); the torch MLP
        feeds them to embeddings. Both come from this one function.
        """
        return self.encode_normalized(self.normalize(frame, raw=raw).frame)

    def encode_normalized(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        n = len(frame)
        blocks: list[np.ndarray] = []
        if self.numeric:
            raw = np.column_stack([frame[c].to_numpy(dtype="float64", na_value=np.nan)
                                   for c in self.numeric])
            for j, column in enumerate(self.numeric):
                if column in self.clip:
                    low, high = self.clip[column]
                    raw[:, j] = np.clip(raw[:, j], -np.inf if low is None else low,
                                        np.inf if high is None else high)
            means = np.array([self.means[c] for c in self.numeric])
            scales = np.array([self.scales[c] for c in self.numeric])
            missing = np.isnan(raw)
            blocks.append((np.where(missing, means, raw) - means) / scales)
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

    def transform(self, frame: pd.DataFrame, *, raw: bool) -> np.ndarray:
        """Rows in, float32 feature matrix out (one-hot categories). Extra columns are
        ignored."""
        return self.onehot(*self.encode(frame, raw=raw))

    def onehot(self, numeric: np.ndarray, codes: np.ndarray) -> np.ndarray:
        n = len(numeric)
        blocks = [numeric]
        for j, col in enumerate(self.categorical):
            onehot = np.zeros((n, len(self.vocab[col]) + 1), dtype=np.float32)
            onehot[np.arange(n), codes[:, j]] = 1.0
            blocks.append(onehot)
        return np.hstack(blocks).astype(np.float32, copy=False)

    def transform_frame(self, frame: pd.DataFrame, *, raw: bool,
                        keep: list[str] | None = None) -> pd.DataFrame:
        out = pd.DataFrame(self.transform(frame, raw=raw), columns=self.names,
                           index=frame.index)
        for col in keep or []:
            out[col] = frame[col].to_numpy()
        return out

    # -- storage -------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps({
            "spec": self.spec.to_dict(), "means": self.means, "scales": self.scales,
            "indicators": self.indicators, "vocab": self.vocab, "clip": self.clip,
            "names": self.names, "sources": self.sources}, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FittedFeatures:
        raw = json.loads(text)
        if "spec" not in raw:  # features.json written before the row normalization existed
            generalized = raw.pop("generalized", [])
            raw["spec"] = {"numeric": raw.pop("numeric"), "categorical": raw.pop("categorical"),
                           "pii": dict.fromkeys(generalized, "generalize")}
        raw["spec"] = RowSpec.from_dict(raw["spec"])
        return cls(**raw)

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json())
        return path

    @classmethod
    def load(cls, path: Path) -> FittedFeatures:
        return cls.from_json(path.read_text())


def merge_partials(blobs: Iterable[str], spec: RowSpec) -> FittedFeatures:
    merged = merge_stats(blobs, spec.numeric, spec.categorical)
    fitted = FittedFeatures(spec=spec, names=["-"])  # names computed below
    for col, moments in merged.numbers.items():
        fitted.means[col] = moments.mean if moments.n else 0.0
        std = math.sqrt(moments.variance)
        fitted.scales[col] = std if std > 1e-12 * max(1.0, abs(moments.mean)) else 1.0
        if moments.nulls:
            fitted.indicators.append(col)
    for col, value_counts in merged.counts.items():
        ranked = sorted(value_counts.items(), key=lambda kv: (-kv[1], kv[0]))
        fitted.vocab[col] = [v for v, _ in ranked[:MAX_CATEGORIES]]
    fitted.names, fitted.sources = feature_names(fitted.numeric, fitted.indicators,
                                                 fitted.vocab, fitted.categorical)
    return fitted


def fit_frames(frames: Iterable[pd.DataFrame], spec: RowSpec,
               clip: dict[str, list[float | None]] | None = None) -> FittedFeatures:
    """Fit over in-memory, already normalized batches (no Ray): what the preprocess
    stage does per block."""
    partials = PartialStats(spec.numeric, spec.categorical, clip or {})
    fitted = merge_partials([partials(f)["stats"].iloc[0] for f in frames], spec)
    fitted.clip = dict(clip or {})
    return fitted


__all__ = ["MAX_CATEGORIES", "MISSING", "UNKNOWN", "FittedFeatures", "PartialStats",
           "category_strings", "feature_names", "fit_frames", "merge_partials"]
