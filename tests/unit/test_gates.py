from __future__ import annotations

from raymlops.config import GatesConfig
from raymlops.evaluation.gates import decide


def test_gate_passes_and_says_why():
    verdict = decide(GatesConfig(min={"roc_auc": 0.7}), {"roc_auc": 0.75})
    assert verdict.passed
    assert verdict.reasons == ["roc_auc=0.7500 meets gates.min.roc_auc=0.7"]


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
