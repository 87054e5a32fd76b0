"""Traffic policy: which model version answers a request. Pure logic, no Ray.

Weights are percentages per version. A request with a routing key (a user or session
id) always lands on the same version for the same weights (sticky); a request without
one is routed at random in proportion to the weights.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping


class TrafficPolicy:
    def __init__(self, weights: Mapping[str, float]) -> None:
        cleaned = {str(v): float(w) for v, w in weights.items() if float(w) > 0}
        if not cleaned:
            raise ValueError("at least one version needs a positive weight")
        if any(w < 0 for w in weights.values()):
            raise ValueError("weights cannot be negative")
        total = sum(cleaned.values())
        self.weights = {v: w * 100.0 / total for v, w in sorted(cleaned.items())}
        self._versions = list(self.weights)
        self._cumulative: list[float] = []
        acc = 0.0
        for version in self._versions:
            acc += self.weights[version] / 100.0
            self._cumulative.append(acc)

    def _pick(self, unit: float) -> str:
        for version, edge in zip(self._versions, self._cumulative, strict=True):
            if unit < edge:
                return version
        return self._versions[-1]

    def choose(self, key: str | None = None, rng: random.Random | None = None) -> str:
        if len(self._versions) == 1:
            return self._versions[0]
        if key:
            digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
            return self._pick(int.from_bytes(digest, "big") / 2**64)
        return self._pick((rng or random).random())
