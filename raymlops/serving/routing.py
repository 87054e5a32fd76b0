"""Routing: which live version answers a request. Pure logic, no Ray; both serving shapes
(co-located and separate) route through ``RoutingTable``.

**Weighted and sticky.** The unit interval is cut into integer buckets; each version owns
a set of ranges whose size is its weight. A request with a routing key (a user or
session id, from a header or a named body field) hashes, salted, to a bucket, and the
version owning that bucket answers; a request without one draws a bucket at random.

**Ranges move as little as the weights do** (as GrowthBook's SDK keeps a user in its
variation). ``allocate`` derives new ranges from the previous ones: a version whose
weight fell gives up the lowest part of its ranges, a version whose weight rose takes
the lowest free buckets, and a version whose weight did not change keeps exactly the
buckets it had. So a canary that starts with 10% owns [0, 0.1); raised to 20% it owns
[0, 0.2): it only gains users from the champion, none move back and forth, for any
number of versions. Versions are ordered as numbers ("9" before "10"), not as strings.

**Salted per model and rollout.** The bucket of a key is ``hash(salt, key)``; the salt
names the model and the versions a rollout brought in, so the users in the low buckets
of one experiment are not the same users in the next.

**Shadows** get no primary traffic: each mirrored request goes to them after the primary
answered. **Overrides** (``x-raymlops-version``) pin a request to a live version, where
the config allows it.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: buckets in the unit interval; weights are kept to 1e-6 of the traffic
SCALE = 1_000_000

Ranges = list[tuple[int, int]]


def version_order(version: str) -> tuple[int, int | str]:
    """Registry versions in numeric order ("9" before "10"); names after numbers."""
    return (0, int(version)) if version.isdigit() else (1, version)


def to_units(weights: Mapping[str, float]) -> dict[str, int]:
    """Percent weights to whole buckets summing to ``SCALE`` (largest remainder)."""
    if any(float(w) < 0 for w in weights.values()):
        raise ValueError("weights cannot be negative")
    positive = {str(v): float(w) for v, w in weights.items() if float(w) > 0}
    if not positive:
        raise ValueError("at least one version needs a positive weight")
    total = sum(positive.values())
    exact = {v: w * SCALE / total for v, w in positive.items()}
    units = {v: int(x) for v, x in exact.items()}
    short = SCALE - sum(units.values())
    for v in sorted(exact, key=lambda v: (units[v] - exact[v], version_order(v)))[:short]:
        units[v] += 1
    return {v: u for v, u in units.items() if u > 0}


def _size(ranges: Ranges) -> int:
    return sum(b - a for a, b in ranges)


def _merge(ranges: Ranges) -> Ranges:
    out: Ranges = []
    for a, b in sorted(r for r in ranges if r[1] > r[0]):
        if out and out[-1][1] == a:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def _take_low(ranges: Ranges, units: int) -> tuple[Ranges, Ranges]:
    """(the lowest ``units`` buckets of ``ranges``, the rest)."""
    taken: Ranges = []
    rest: Ranges = []
    for a, b in sorted(ranges):
        if units <= 0:
            rest.append((a, b))
        elif b - a <= units:
            taken.append((a, b))
            units -= b - a
        else:
            taken.append((a, a + units))
            rest.append((a + units, b))
            units = 0
    return taken, rest


def _take_high(ranges: Ranges, units: int) -> tuple[Ranges, Ranges]:
    """(the highest ``units`` buckets of ``ranges``, the rest)."""
    mirrored = [(SCALE - b, SCALE - a) for a, b in ranges]
    taken, rest = _take_low(mirrored, units)
    return (sorted((SCALE - b, SCALE - a) for a, b in taken),
            sorted((SCALE - b, SCALE - a) for a, b in rest))


def allocate(weights: Mapping[str, float],
             previous: Mapping[str, Ranges] | None = None) -> dict[str, Ranges]:
    """Ranges for ``weights`` (percent per version) that move the fewest buckets from
    ``previous``. Without a previous allocation, the heaviest version (the highest of
    equals) starts with everything, so the others take [0, w) upwards.

    A version that shrinks gives back the buckets it took last, as GrowthBook does: a
    canary going from 20% to 10% keeps [0, 0.1) and its longest-exposed users. The
    version holding the top bucket (the one that started with everything) gives from
    its low end, which is where the others grow."""
    units = to_units(weights)
    if previous and sum(_size(r) for r in previous.values()) == SCALE:
        owned = {str(v): _merge(list(r)) for v, r in previous.items()}
    else:
        heaviest = max(units, key=lambda v: (units[v], version_order(v)))
        owned = {heaviest: [(0, SCALE)]}
    free: Ranges = []
    for version in list(owned):
        surplus = _size(owned[version]) - units.get(version, 0)
        if surplus > 0:
            origin = any(end == SCALE for _, end in owned[version])
            give = _take_low if origin else _take_high
            given, owned[version] = give(owned[version], surplus)
            free.extend(given)
    free = _merge(free)
    for version in sorted(units, key=version_order):
        need = units[version] - _size(owned.get(version, []))
        if need > 0:
            taken, free = _take_low(free, need)
            owned[version] = _merge([*owned.get(version, []), *taken])
    return {v: owned[v] for v in sorted(units, key=version_order)}


def bucket(salt: str, key: str) -> int:
    """The bucket of a routing key: a salted 64-bit BLAKE2b hash, scaled to [0, SCALE)."""
    secret = hashlib.blake2b(salt.encode(), digest_size=32).digest()  # any length of salt
    digest = hashlib.blake2b(key.encode(), digest_size=8, key=secret).digest()
    return int.from_bytes(digest, "big") * SCALE >> 64


def rollout_salt(model: str, weights: Mapping[str, float],
                 previous: RoutingState | None) -> str:
    """The salt of this split. A rollout starts when a model served by one version gets
    more; its salt (the model and the versions live then) stays until one version
    serves alone again, so changing weights mid-rollout moves no sticky key."""
    live = sorted((v for v, w in weights.items() if w > 0), key=version_order)
    if previous is not None and previous.salt and len(previous.weights) > 1:
        return previous.salt
    return f"{model}:{'+'.join(live)}"


@dataclass(frozen=True)
class RoutingState:
    """What every replica routes by; travels in ``user_config`` and the control actor.

    ``generation`` orders states (milliseconds since the epoch when made): a replica
    takes a state only when it is newer than the one it routes by."""

    versions: dict[str, str]  # version -> model URI, every loaded version (shadows too)
    weights: dict[str, float]  # version -> percent of primary traffic
    ranges: dict[str, Ranges]
    salt: str
    shadows: dict[str, float] = field(default_factory=dict)  # version -> share mirrored
    generation: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"versions": dict(self.versions), "weights": dict(self.weights),
                "ranges": {v: [list(r) for r in rs] for v, rs in self.ranges.items()},
                "salt": self.salt, "shadows": dict(self.shadows),
                "generation": self.generation}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> RoutingState:
        return cls(versions={str(k): str(v) for k, v in raw["versions"].items()},
                   weights={str(k): float(v) for k, v in raw["weights"].items()},
                   ranges={str(k): [(int(a), int(b)) for a, b in v]
                           for k, v in raw["ranges"].items()},
                   salt=str(raw["salt"]),
                   shadows={str(k): float(v) for k, v in (raw.get("shadows") or {}).items()},
                   generation=int(raw.get("generation", 0)))


def plan(model: str, versions: Mapping[str, str], weights: Mapping[str, float],
         shadows: Mapping[str, float] | None = None, *, previous: RoutingState | None = None,
         generation: int | None = None) -> RoutingState:
    """The routing state that serves ``weights`` (and mirrors to ``shadows``), moving as
    few sticky keys as possible from ``previous``."""
    shadows = {str(v): float(s) for v, s in (shadows or {}).items()}
    weights = {str(v): float(w) for v, w in weights.items()}
    unknown = sorted((set(weights) | set(shadows)) - set(versions), key=version_order)
    if unknown:
        raise ValueError(f"versions {unknown} have weights or shadows but no model URI")
    both = sorted(set(shadows) & {v for v, w in weights.items() if w > 0})
    if both:
        raise ValueError(f"versions {both} cannot take primary traffic and be shadows")
    if any(not 0 < s <= 100 for s in shadows.values()):
        raise ValueError("a shadow mirrors between 0 (exclusive) and 100 percent of requests")
    ranges = allocate(weights, previous.ranges if previous else None)
    total = sum(w for w in weights.values() if w > 0)
    percent = {v: _size(r) * 100.0 / SCALE for v, r in ranges.items()}
    if abs(sum(percent.values()) - 100.0) > 1e-6 or total <= 0:
        raise ValueError("the weights do not add up to a split")
    live = {v: versions[v] for v in sorted({*ranges, *shadows}, key=version_order)}
    return RoutingState(versions=live, weights=percent, ranges=ranges,
                        salt=rollout_salt(model, percent, previous), shadows=shadows,
                        generation=generation if generation is not None else max(
                            int(time.time() * 1000),
                            previous.generation + 1 if previous else 0))


class RoutingTable:
    """Chooses the primary version of a request, and the shadows that get a copy."""

    def __init__(self, state: RoutingState) -> None:
        self.state = state
        edges = sorted((a, b, v) for v, rs in state.ranges.items() for a, b in rs)
        self._starts = [a for a, _, _ in edges]
        self._owners = [v for _, _, v in edges]
        self.weights = dict(state.weights)
        #: the version with the most primary traffic (whose inputs parse a request
        #: before it is routed), computed once per state, not per request
        self.primary = max(self.weights, key=lambda v: (self.weights[v], version_order(v)))

    def owner(self, point: int) -> str:
        from bisect import bisect_right

        return self._owners[max(bisect_right(self._starts, point) - 1, 0)]

    def choose(self, key: str | None = None, rng: random.Random | None = None) -> str:
        if len(self._owners) == 1:
            return self._owners[0]
        if key:
            return self.owner(bucket(self.state.salt, key))
        return self.owner((rng or random).randrange(SCALE))

    def mirrors(self, rng: random.Random | None = None) -> list[str]:
        """The shadow versions that get a copy of this request."""
        draw = rng or random
        return [v for v, share in self.state.shadows.items()
                if share >= 100 or draw.random() * 100 < share]
