from __future__ import annotations

import random
from collections import Counter

import pytest

from raymlops.serving.routing import TrafficPolicy


def test_single_version_takes_everything():
    policy = TrafficPolicy({"3": 100})
    assert {policy.choose() for _ in range(50)} == {"3"}
    assert policy.weights == {"3": 100.0}


def test_random_split_follows_the_weights():
    policy = TrafficPolicy({"1": 90, "2": 10})
    rng = random.Random(0)
    counts = Counter(policy.choose(rng=rng) for _ in range(20_000))
    assert 0.08 < counts["2"] / 20_000 < 0.12


def test_routing_key_is_sticky_and_split_by_weight():
    policy = TrafficPolicy({"1": 50, "2": 50})
    keys = [f"user-{i}" for i in range(4000)]
    first = {k: policy.choose(k) for k in keys}
    assert all(policy.choose(k) == v for k, v in first.items())
    share = Counter(first.values())["2"] / len(keys)
    assert 0.45 < share < 0.55


def test_weights_are_normalised_and_zero_weights_dropped():
    policy = TrafficPolicy({"1": 3, "2": 1, "3": 0})
    assert policy.weights == {"1": 75.0, "2": 25.0}


def test_bad_weights_are_refused():
    with pytest.raises(ValueError, match="positive weight"):
        TrafficPolicy({"1": 0})
