"""Per-batch partial statistics, merged exactly: what fitting and profiling read in one pass.

Numbers keep (count, mean, M2, nulls, min, max) per batch and merge with Chan et al.'s
pairwise update, which stays exact where ``sum(x**2)/n - mean**2`` cancels: for
1.7e9 +- 2.0 that formula gives a variance of 0, this one gives 4.0. Categories keep
their value counts (optionally only the most common ``cap`` per batch, with the number
of distinct values, so an id-like column does not blow up the partials).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

MISSING = "__missing__"


@dataclass
class Moments:
    """Count, mean and sum of squared deviations of the non-missing values, plus extremes."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    nulls: int = 0
    low: float | None = None
    high: float | None = None

    @classmethod
    def of(cls, values: np.ndarray) -> Moments:
        ok = values[~np.isnan(values)]
        nulls = int(len(values) - len(ok))
        if not len(ok):
            return cls(nulls=nulls)
        mean = float(ok.mean())
        return cls(n=len(ok), mean=mean, m2=float(((ok - mean) ** 2).sum()), nulls=nulls,
                   low=float(ok.min()), high=float(ok.max()))

    def merge(self, other: Moments) -> Moments:
        n = self.n + other.n
        if n == 0:
            return Moments(nulls=self.nulls + other.nulls)
        delta = other.mean - self.mean
        mean = self.mean + delta * other.n / n
        m2 = self.m2 + other.m2 + delta * delta * self.n * other.n / n
        lows = [v for v in (self.low, other.low) if v is not None]
        highs = [v for v in (self.high, other.high) if v is not None]
        return Moments(n=n, mean=mean, m2=m2, nulls=self.nulls + other.nulls,
                       low=min(lows) if lows else None, high=max(highs) if highs else None)

    @property
    def variance(self) -> float:
        return self.m2 / self.n if self.n else 0.0

    def to_list(self) -> list[Any]:
        return [self.n, self.mean, self.m2, self.nulls, self.low, self.high]

    @classmethod
    def from_list(cls, raw: list[Any]) -> Moments:
        n, mean, m2, nulls, low, high = raw
        return cls(int(n), float(mean), float(m2), int(nulls), low, high)


def category_strings(values: Any) -> np.ndarray:
    """A normalized categorical column as strings, with every kind of missing as MISSING.

    ``Series.map`` skips missing values of Arrow-backed columns, which once left ``<NA>``
    to fall into the unknown bucket while a JSON ``null`` became MISSING; here every
    missing value (None, NaN, pd.NA) is found with ``pd.isna`` on the object values.
    """
    array = (values.astype(object).to_numpy() if isinstance(values, pd.Series)
             else np.asarray(values, dtype=object))
    out = array.copy()
    out[pd.isna(array)] = MISSING
    return out.astype(str).astype(object)


class PartialStats:
    """Batch function: one row of JSON partial statistics per batch (merged by the driver).

    ``clip`` bounds numbers before their moments are taken (as the transform sees them);
    ``cap`` keeps only the most common values of each category per batch.
    """

    def __init__(self, numeric: list[str], categorical: list[str],
                 clip: dict[str, list[float | None]] | None = None,
                 cap: int | None = None) -> None:
        self.numeric = numeric
        self.categorical = categorical
        self.clip = clip or {}
        self.cap = cap

    def partial(self, batch: pd.DataFrame) -> dict[str, Any]:
        from raymlops.features.normalize import numbers_of

        stats: dict[str, Any] = {"num": {}, "cat": {}, "distinct": {}}
        for col in self.numeric:
            values, _ = numbers_of(batch[col])
            if col in self.clip:
                low, high = self.clip[col]
                values = np.clip(values, -np.inf if low is None else low,
                                 np.inf if high is None else high)
            stats["num"][col] = Moments.of(values).to_list()
        for col in self.categorical:
            counts = pd.Series(category_strings(batch[col])).value_counts()
            stats["distinct"][col] = [int((counts.index != MISSING).sum()),
                                      int(counts.drop(MISSING, errors="ignore").sum())]
            if self.cap is not None and len(counts) > self.cap:
                counts = counts.head(self.cap)
                stats.setdefault("truncated", []).append(col)
            stats["cat"][col] = {str(k): int(v) for k, v in counts.items()}
        return stats

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"stats": [json.dumps(self.partial(batch))]})


@dataclass
class Merged:
    numbers: dict[str, Moments]
    counts: dict[str, Counter[str]]
    #: per category: (distinct non-missing values, non-missing rows); exact unless truncated
    distinct: dict[str, tuple[int, int]]
    truncated: set[str]


def merge_stats(blobs: Iterable[str], numeric: list[str], categorical: list[str]) -> Merged:
    numbers = {c: Moments() for c in numeric}
    counts: dict[str, Counter[str]] = {c: Counter() for c in categorical}
    summed = dict.fromkeys(categorical, (0, 0))
    truncated: set[str] = set()
    for blob in blobs:
        stats = json.loads(blob)
        for col, raw in stats["num"].items():
            numbers[col] = numbers[col].merge(Moments.from_list(raw))
        for col, value_counts in stats["cat"].items():
            counts[col].update(value_counts)
        for col, (distinct, rows) in stats.get("distinct", {}).items():
            summed[col] = (summed[col][0] + distinct, summed[col][1] + rows)
        truncated.update(stats.get("truncated", []))
    distinct = {c: (summed[c][0] if c in truncated else
                    sum(1 for v in counts[c] if v != MISSING), summed[c][1])
                for c in categorical}
    return Merged(numbers, counts, distinct, truncated)
