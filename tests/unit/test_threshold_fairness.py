"""The decision threshold (chosen on validation rows) and fairness numbers (fairlearn's)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from raymlops._internal.threshold import choose_threshold
from raymlops.evaluation.fairness import fairness_of


def _data(n: int = 3000, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.1).astype(int)
    score = np.clip(0.1 + 0.35 * y + rng.normal(0, 0.15, n), 0, 1)
    return y, score


def test_max_f1_beats_a_fixed_half_on_a_rare_positive_label():
    y, score = _data()
    chosen = choose_threshold(y, score)
    f1_chosen = skm.f1_score(y, score >= chosen["value"])
    assert chosen["score"] == pytest.approx(f1_chosen, abs=1e-12)
    assert f1_chosen > skm.f1_score(y, score >= 0.5) + 0.05
    # no other threshold does better
    grid = np.unique(score)
    assert f1_chosen >= max(skm.f1_score(y, score >= t) for t in grid[::25]) - 1e-12


def test_cost_objective_minimizes_the_stated_cost():
    y, score = _data(seed=1)
    chosen = choose_threshold(y, score, objective="cost", cost_fp=1.0, cost_fn=20.0)

    def cost(t):
        decided = score >= t
        return int((decided & (y == 0)).sum()) + 20 * int((~decided & (y == 1)).sum())

    assert chosen["score"] == cost(chosen["value"])
    assert all(cost(t) >= chosen["score"] for t in np.unique(score)[::10])
    assert chosen["value"] < choose_threshold(y, score)["value"]  # missing a positive is dear


def test_fixed_and_degenerate_cases():
    y, score = _data()
    assert choose_threshold(y, score, objective="fixed", value=0.3)["value"] == 0.3
    assert choose_threshold(np.zeros(10), np.linspace(0, 1, 10))["value"] == 0.5


def test_fairness_numbers_agree_with_fairlearn():
    from fairlearn.metrics import (
        MetricFrame,
        demographic_parity_difference,
        demographic_parity_ratio,
        equalized_odds_difference,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )

    rng = np.random.default_rng(3)
    n = 2000
    group = pd.Series(rng.choice(["F", "M", "X", None], n, p=[0.45, 0.45, 0.05, 0.05]))
    y = (rng.random(n) < 0.3).astype(int)
    decisions = (rng.random(n) < np.where(group == "F", 0.2, 0.35)).astype(int)
    ours = fairness_of(y, decisions, group)
    filled = group.fillna("__missing__")
    assert ours["demographic_parity_difference"] == pytest.approx(
        demographic_parity_difference(y, decisions, sensitive_features=filled), abs=1e-9)
    assert ours["demographic_parity_ratio"] == pytest.approx(
        demographic_parity_ratio(y, decisions, sensitive_features=filled), abs=1e-9)
    assert ours["equalized_odds_difference"] == pytest.approx(
        equalized_odds_difference(y, decisions, sensitive_features=filled), abs=1e-9)
    frame = MetricFrame(metrics={"sr": selection_rate, "tpr": true_positive_rate,
                                 "fpr": false_positive_rate}, y_true=y, y_pred=decisions,
                        sensitive_features=filled)
    for name, row in frame.by_group.iterrows():
        got = ours["groups"][name]
        assert got["selection_rate"] == pytest.approx(row["sr"], abs=1e-9)
        assert got["tpr"] == pytest.approx(row["tpr"], abs=1e-9)
        assert got["fpr"] == pytest.approx(row["fpr"], abs=1e-9)
    rates = frame.by_group["sr"]
    assert ours["disparate_impact_ratio"] == pytest.approx(rates.min() / rates.max(), abs=1e-9)
    assert set(ours["groups"]) == {"F", "M", "X", "__missing__"}


def test_a_group_below_min_rows_is_reported_but_not_judged():
    """A 2 % group whose selection rate is far off by chance (a handful of rows) does not
    decide the gate: the measures are fairlearn's over the groups with enough rows."""
    from fairlearn.metrics import demographic_parity_difference

    from raymlops.config import GatesConfig
    from raymlops.evaluation.gates import decide

    rng = np.random.default_rng(5)
    n = 1000
    group = pd.Series(rng.choice(["F", "M"], n))
    group.iloc[:20] = "X"
    y = (rng.random(n) < 0.3).astype(int)
    decisions = (rng.random(n) < 0.3).astype(int)
    decisions[:20] = 1                     # every X row selected: a difference near 0.7
    everything = fairness_of(y, decisions, group)
    assert everything["demographic_parity_difference"] > 0.6
    ours = fairness_of(y, decisions, group, min_rows=30)
    assert ours["not_judged"] == {"X": 20} and ours["groups"]["X"]["judged"] is False
    assert ours["groups"]["X"]["selection_rate"] == 1.0          # still reported
    judged = (group != "X").to_numpy()
    assert ours["demographic_parity_difference"] == pytest.approx(demographic_parity_difference(
        y[judged], decisions[judged], sensitive_features=group[judged]), abs=1e-12)
    assert ours["demographic_parity_difference"] < 0.1

    gates = GatesConfig.model_validate(
        {"fairness": {"gender": {"demographic_parity_difference": {"max": 0.2}}}})
    verdict = decide(gates, {}, fairness={"gender": ours})
    assert verdict.passed
    assert "X: 20 rows" in verdict.rules[0].reason
    assert "evaluation.fairness_min_rows=30" in verdict.rules[0].reason
    assert not decide(gates, {}, fairness={"gender": everything}).passed

    # one group left to judge: nothing to compare, and the gate fails closed, saying why
    alone = fairness_of(y, decisions, group, min_rows=600)
    assert alone["demographic_parity_difference"] is None
    verdict = decide(gates, {}, fairness={"gender": alone})
    assert not verdict.passed
    assert "0 group(s) to compare, two are needed" in verdict.rules[0].reason
    assert "X: 20 rows" in verdict.rules[0].reason

    # two groups, but nobody selected: the ratio is 0/0, and the reason says so
    ratio = GatesConfig.model_validate(
        {"fairness": {"gender": {"demographic_parity_ratio": {"min": 0.8}}}})
    none_selected = fairness_of(y, np.zeros(n, dtype=int), group, min_rows=30)
    verdict = decide(ratio, {}, fairness={"gender": none_selected})
    assert not verdict.passed and none_selected["demographic_parity_ratio"] is None
    assert "undefined for these decisions" in verdict.rules[0].reason
