"""Every kind of gate, once passing and once failing, each with its reason."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from raymlops.config import GatesConfig
from raymlops.evaluation import behaviour
from raymlops.evaluation.gates import decide


def test_gate_passes_and_says_why():
    verdict = decide(GatesConfig(min={"roc_auc": 0.7}), {"roc_auc": 0.75})
    assert verdict.passed
    assert verdict.reasons == ["roc_auc=0.7500 meets gates.min.roc_auc=0.7"]
    assert verdict.rules[0].value == 0.75 and verdict.rules[0].bound == ">= 0.7"


def test_gate_rejects_on_any_failed_bound():
    verdict = decide(GatesConfig(min={"roc_auc": 0.7}, max={"log_loss": 0.4}),
                     {"roc_auc": 0.75, "log_loss": 0.5})
    assert not verdict.passed
    assert "log_loss=0.5000 is above gates.max.log_loss=0.4" in verdict.reasons


def test_gate_on_a_metric_that_was_not_computed_fails():
    verdict = decide(GatesConfig(min={"roc_auc": 0.7}), {})
    assert not verdict.passed and "not computed" in verdict.reasons[0]


def test_a_nan_metric_fails_its_gate_with_the_reason():
    """NaN < bound is false: a NaN used to pass every gate."""
    for gates in (GatesConfig(min={"roc_auc": 0.7}), GatesConfig(max={"log_loss": 0.5})):
        verdict = decide(gates, {"roc_auc": float("nan"), "log_loss": float("nan")})
        assert not verdict.passed
        assert "is NaN" in verdict.reasons[0] and "cannot hold" in verdict.reasons[0]


def _champion_gates(**rule):
    return GatesConfig.model_validate({"champion": {"roc_auc": rule}})


def test_champion_rule_passes_when_no_worse_and_fails_with_the_champions_value():
    gates = _champion_gates(min_absolute_change=0.0, greater_is_better=True)
    ok = decide(gates, {"roc_auc": 0.80}, champion={"roc_auc": 0.79},
                champion_label="version 3")
    assert ok.passed and "0.7900" in ok.reasons[0] and "version 3" in ok.reasons[0]
    worse = decide(gates, {"roc_auc": 0.75}, champion={"roc_auc": 0.79},
                   champion_label="version 3")
    assert not worse.passed
    assert "champion's 0.7900 (version 3)" in worse.reasons[0]


def test_champion_rule_with_mlflows_semantics_for_lower_is_better_and_relative_change():
    gates = GatesConfig.model_validate({"champion": {
        "log_loss": {"min_relative_change": 0.05, "greater_is_better": False,
                     "threshold": 0.6}}})
    assert decide(gates, {"log_loss": 0.40}, champion={"log_loss": 0.45}).passed  # -11%
    verdict = decide(gates, {"log_loss": 0.44}, champion={"log_loss": 0.45})  # -2%
    assert not verdict.passed and "below +5.00%" in verdict.reasons[0]
    assert not decide(gates, {"log_loss": 0.7}, champion=None).passed  # threshold alone


def test_champion_rule_without_a_champion_says_so():
    verdict = decide(_champion_gates(min_absolute_change=0.0, greater_is_better=True),
                     {"roc_auc": 0.6}, champion=None, champion_label="none")
    assert verdict.passed and "no champion serves yet" in verdict.reasons[0]


def test_fairness_bounds_pass_and_fail_with_the_value():
    gates = GatesConfig.model_validate({"fairness": {"gender": {
        "demographic_parity_difference": {"max": 0.1}, "disparate_impact_ratio": {"min": 0.8}}}})
    fair = {"gender": {"demographic_parity_difference": 0.05, "disparate_impact_ratio": 0.9}}
    ok = decide(gates, {}, fairness=fair)
    assert ok.passed and "0.0500" in " ".join(ok.reasons) and "0.9000" in " ".join(ok.reasons)
    unfair = {"gender": {"demographic_parity_difference": 0.2, "disparate_impact_ratio": 0.7}}
    verdict = decide(gates, {}, fairness=unfair)
    assert not verdict.passed
    assert [r.passed for r in verdict.rules] == [False, False]
    assert "outside >= 0.8" in verdict.reasons[0] or "outside >= 0.8" in verdict.reasons[1]


class _Features:
    numeric = ["income"]
    categorical = ["gender"]
    vocab = {"gender": ["F", "M", "__missing__"]}
    scales = {"income": 10.0}


class _Model:
    """A stand-in model (a unit test of the check's logic, not of a real model)."""

    features = _Features()

    def __init__(self, gender_effect: float, income_sign: float) -> None:
        self.gender_effect, self.income_sign = gender_effect, income_sign

    def predict_normalized(self, frame: pd.DataFrame) -> np.ndarray:
        return (0.5 + self.gender_effect * (frame["gender"] == "F").to_numpy()
                + self.income_sign * 0.001 * frame["income"].to_numpy())


ROWS = pd.DataFrame({"income": np.linspace(0, 100, 50), "gender": ["F", "M"] * 25})


def test_invariance_passes_within_epsilon_and_fails_beyond_it():
    from raymlops.config import InvarianceCheck

    check = InvarianceCheck(feature="gender", epsilon=0.01)
    ok = behaviour.invariance(_Model(0.0, 1.0), ROWS, check)
    assert ok.passed and "within epsilon 0.01" in ok.reason
    rule = behaviour.invariance(_Model(0.2, 1.0), ROWS, check)
    assert not rule.passed and rule.value == pytest.approx(0.2) and "above epsilon" in rule.reason


def test_direction_passes_when_monotone_and_fails_with_the_share_of_violations():
    from raymlops.config import DirectionCheck

    check = DirectionCheck(feature="income", direction="non_decreasing")
    ok = behaviour.direction(_Model(0.0, 1.0), ROWS, check)
    assert ok.passed and "lowered the score on 0.00% of 50 rows" in ok.reason
    rule = behaviour.direction(_Model(0.0, -1.0), ROWS, check)
    assert not rule.passed and rule.value == 1.0 and "lowered the score on 100.00%" in rule.reason


def test_slice_minimum_passes_and_fails_naming_the_worst_slice():
    from raymlops.config import SliceGate

    slices = {"gender": {"F": {"roc_auc": 0.72, "rows": 400.0},
                         "M": {"roc_auc": 0.61, "rows": 400.0},
                         "X": {"roc_auc": 0.2, "rows": 5.0}}}
    [ok] = behaviour.slice_minimums(slices, SliceGate(min={"roc_auc": 0.6}))
    assert ok.passed and "gender=M" in ok.reason  # X has too few rows to judge
    [bad] = behaviour.slice_minimums(slices, SliceGate(min={"roc_auc": 0.65}))
    assert not bad.passed and "gender=M with roc_auc=0.6100" in bad.reason


def test_champion_rule_direction_defaults_from_the_metric():
    lower = GatesConfig.model_validate({"champion": {"log_loss": {"min_absolute_change": 0}}})
    assert decide(lower, {"log_loss": 0.40}, champion={"log_loss": 0.45}).passed
    assert not decide(lower, {"log_loss": 0.50}, champion={"log_loss": 0.45}).passed
    higher = GatesConfig.model_validate({"champion": {"roc_auc": {"min_absolute_change": 0}}})
    assert not decide(higher, {"roc_auc": 0.70}, champion={"roc_auc": 0.75}).passed


def test_invariance_to_a_column_the_model_does_not_read_fails_instead_of_passing():
    from raymlops.config import InvarianceCheck

    rule = behaviour.invariance(_Model(0.0, 1.0), ROWS.assign(gendre="F"),
                                InvarianceCheck(feature="gendre"))
    assert not rule.passed and "not an input of the model" in rule.reason


def test_relative_change_against_a_champion_of_zero_needs_a_better_candidate():
    """MLflow's rule: a relative change from 0 is undefined, so the candidate must be
    better; an r2 of -3 must not pass against a champion's 0."""
    gates = GatesConfig.model_validate({"champion": {"r2": {"min_relative_change": 0.0}}})
    worse = decide(gates, {"r2": -3.0}, champion={"r2": 0.0})
    assert not worse.passed and "not better than the champion's 0" in worse.reasons[0]
    assert decide(gates, {"r2": 0.1}, champion={"r2": 0.0}).passed
