"""A dataset profile: a per-column summary, merged exactly from per-batch ``PartialStats``."""

from __future__ import annotations

import math
from typing import Any

from raymlops.features.stats import MISSING, Merged

TOP_VALUES = 10


def profile_of(merged: Merged) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for col, moments in merged.numbers.items():
        out[col] = {"kind": "number", "count": moments.n, "nulls": moments.nulls,
                    "mean": moments.mean if moments.n else None,
                    "std": math.sqrt(moments.variance) if moments.n else None,
                    "min": moments.low, "max": moments.high}
    for col, counts in merged.counts.items():
        present = {k: v for k, v in counts.items() if k != MISSING}
        distinct, rows = merged.distinct.get(col, (len(present), sum(present.values())))
        top = sorted(present.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_VALUES]
        out[col] = {"kind": "category", "count": rows, "nulls": counts.get(MISSING, 0),
                    "distinct": distinct, "distinct_exact": col not in merged.truncated,
                    "top": dict(top)}
    return out
