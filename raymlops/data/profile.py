"""A dataset profile: a per-column summary, merged from per-batch ``PartialStats``."""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

TOP_VALUES = 10


def merge_profile(blobs: list[str]) -> dict[str, Any]:
    numbers: dict[str, list[Any]] = {}
    categories: dict[str, Counter[str]] = {}
    for blob in blobs:
        stats = json.loads(blob)
        for col, (n, s, sq, nulls, low, high) in stats["num"].items():
            acc = numbers.setdefault(col, [0, 0.0, 0.0, 0, None, None])
            acc[0] += n
            acc[1] += s
            acc[2] += sq
            acc[3] += nulls
            if low is not None:
                acc[4] = low if acc[4] is None else min(acc[4], low)
                acc[5] = high if acc[5] is None else max(acc[5], high)
        for col, counts in stats["cat"].items():
            categories.setdefault(col, Counter()).update(counts)
    out: dict[str, Any] = {}
    for col, (n, s, sq, nulls, low, high) in numbers.items():
        mean = s / n if n else None
        std = math.sqrt(max(sq / n - mean * mean, 0.0)) if n and mean is not None else None
        out[col] = {"kind": "number", "count": n, "nulls": nulls, "mean": mean, "std": std,
                    "min": low, "max": high}
    for col, counts in categories.items():
        nulls = counts.pop("__missing__", 0)
        out[col] = {"kind": "category", "count": sum(counts.values()), "nulls": nulls,
                    "distinct": len(counts), "top": dict(counts.most_common(TOP_VALUES))}
    return out
