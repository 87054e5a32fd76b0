from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raymlops.serving.routing import (
    SCALE,
    RoutingState,
    RoutingTable,
    allocate,
    bucket,
    plan,
    to_units,
)

KEYS = [f"user-{i}" for i in range(3000)]


def _uris(*versions: str) -> dict[str, str]:
    return {v: f"models:/m/{v}" for v in versions}


def _table(weights, previous=None, shadows=None) -> RoutingTable:
    return RoutingTable(plan("m", _uris(*weights, *(shadows or {})), weights, shadows,
                             previous=previous.state if previous else None))


def test_single_version_takes_everything():
    table = _table({"3": 100})
    assert {table.choose() for _ in range(50)} == {"3"}
    assert {table.choose(k) for k in KEYS[:50]} == {"3"}
    assert table.weights == {"3": 100.0}


def test_random_split_follows_the_weights():
    table = _table({"1": 90, "2": 10})
    rng = random.Random(0)
    counts = Counter(table.choose(rng=rng) for _ in range(20_000))
    assert 0.08 < counts["2"] / 20_000 < 0.12


def test_routing_key_is_sticky_and_split_by_weight():
    table = _table({"1": 50, "2": 50})
    first = {k: table.choose(k) for k in KEYS}
    assert all(table.choose(k) == v for k, v in first.items())
    assert 0.45 < Counter(first.values())["2"] / len(KEYS) < 0.55


def test_the_canary_owns_the_low_range_and_only_gains_users():
    start = _table({"1": 100})
    canary = _table({"1": 90, "2": 10}, previous=start)
    assert canary.state.ranges["2"] == [(0, SCALE // 10)]
    salt = canary.state.salt
    assert all((canary.choose(k) == "2") == (bucket(salt, k) < SCALE // 10) for k in KEYS)
    raised = _table({"1": 70, "2": 30}, previous=canary)
    assert raised.state.salt == salt  # the same rollout keeps its salt
    before = {k: canary.choose(k) for k in KEYS}
    after = {k: raised.choose(k) for k in KEYS}
    moved = [(before[k], after[k]) for k in KEYS if before[k] != after[k]]
    assert moved and set(moved) == {("1", "2")}  # champion -> canary, never back


def test_a_shrinking_canary_keeps_its_longest_exposed_users():
    canary = _table({"1": 80, "2": 20}, previous=_table({"1": 100}))
    lowered = _table({"1": 90, "2": 10}, previous=canary)
    assert lowered.state.ranges["2"] == [(0, SCALE // 10)]  # [0, w), as GrowthBook
    assert lowered.state.ranges["1"] == [(SCALE // 10, SCALE)]
    before = {k: canary.choose(k) for k in KEYS}
    after = {k: lowered.choose(k) for k in KEYS}
    assert {(before[k], after[k]) for k in KEYS if before[k] != after[k]} == {("2", "1")}
    assert all(before[k] == "2" for k in KEYS if after[k] == "2")  # nobody new on 2


def test_versions_are_ordered_as_numbers():
    table = _table({"9": 80, "10": 10, "11": 10}, previous=_table({"9": 100}))
    assert list(table.state.ranges) == ["9", "10", "11"]
    assert table.state.ranges["10"] == [(0, SCALE // 10)]
    assert table.state.ranges["11"] == [(SCALE // 10, 2 * SCALE // 10)]


def test_a_new_rollout_gets_a_new_salt():
    first = _table({"1": 90, "2": 10}, previous=_table({"1": 100}))
    second = _table({"2": 90, "3": 10}, previous=_table({"2": 100}))
    assert first.state.salt != second.state.salt
    low_first = {k for k in KEYS if first.choose(k) == "2"}
    low_second = {k for k in KEYS if second.choose(k) == "3"}
    assert len(low_first & low_second) < 0.3 * len(low_second)  # not the same users


def test_weights_are_normalised_and_zero_weights_dropped():
    table = _table({"1": 3, "2": 1, "3": 0})
    assert table.weights == {"1": 75.0, "2": 25.0}
    assert sum(to_units({"1": 1, "2": 1, "3": 1}).values()) == SCALE


def test_bad_weights_are_refused():
    with pytest.raises(ValueError, match="positive weight"):
        plan("m", _uris("1"), {"1": 0})
    with pytest.raises(ValueError, match="negative"):
        plan("m", _uris("1", "2"), {"1": 100, "2": -1})
    with pytest.raises(ValueError, match="no model URI"):
        plan("m", _uris("1"), {"1": 50, "2": 50})
    with pytest.raises(ValueError, match="shadows"):
        plan("m", _uris("1", "2"), {"1": 50, "2": 50}, {"2": 100})


def test_shadows_get_copies_and_no_primary_traffic():
    table = _table({"1": 100}, shadows={"2": 100})
    assert {table.choose(k) for k in KEYS[:100]} == {"1"}
    assert table.mirrors() == ["2"]
    half = _table({"1": 100}, shadows={"2": 50})
    rng = random.Random(1)
    share = sum(bool(half.mirrors(rng)) for _ in range(4000)) / 4000
    assert 0.45 < share < 0.55


def test_the_state_round_trips():
    state = _table({"1": 80, "2": 20}, shadows={"3": 25}).state
    assert RoutingState.from_dict(state.to_dict()) == state


weights_st = st.dictionaries(st.sampled_from(["1", "2", "3", "9", "10"]),
                             st.integers(min_value=0, max_value=100), min_size=1).filter(
    lambda w: sum(w.values()) > 0)


@settings(max_examples=150, deadline=None)
@given(st.lists(weights_st, min_size=2, max_size=6))
def test_a_version_whose_weight_did_not_change_keeps_every_bucket(steps):
    state = None
    for weights in steps:
        new = allocate(weights, state)
        units = to_units(weights)
        assert sum(b - a for rs in new.values() for a, b in rs) == SCALE
        assert {v: sum(b - a for a, b in rs) for v, rs in new.items()} == units
        if state is not None:
            old_units = {v: sum(b - a for a, b in rs) for v, rs in state.items()}
            for version, ranges in new.items():
                old = state.get(version, [])
                if old_units.get(version) == units[version]:
                    assert ranges == old  # unchanged weight: exactly the same buckets
                elif units[version] > old_units.get(version, 0):
                    assert _within(old, ranges)  # a version that gains keeps all it had
                else:
                    assert _within(ranges, old)  # a version that loses only gives up
        state = new


def _within(inner, outer) -> bool:
    # ranges are merged, so a contiguous piece of one lies inside one range of the other
    return all(any(c <= a and b <= d for c, d in outer) for a, b in inner)


def test_a_long_model_name_still_salts_each_rollout_apart():
    long = "m" * 80
    first = plan(long, _uris("1", "2"), {"1": 90, "2": 10}, previous=_table({"1": 100}).state)
    second = plan(long, _uris("2", "3"), {"2": 90, "3": 10}, previous=_table({"2": 100}).state)
    assert first.salt != second.salt
    assert [bucket(first.salt, k) for k in KEYS[:50]] != [bucket(second.salt, k)
                                                         for k in KEYS[:50]]


def test_generations_always_move_forward():
    state = plan("m", _uris("1"), {"1": 100}, generation=10**15)  # a clock far ahead
    after = plan("m", _uris("1", "2"), {"1": 50, "2": 50}, previous=state)
    assert after.generation == state.generation + 1
