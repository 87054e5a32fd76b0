"""Quality gates: a verdict with its reasons, decided from configured thresholds."""

from __future__ import annotations

from pydantic import BaseModel

from raymlops.config import GatesConfig


class GateVerdict(BaseModel):
    passed: bool
    reasons: list[str]


def decide(gates: GatesConfig, metrics: dict[str, float]) -> GateVerdict:
    reasons: list[str] = []
    passed = True
    for name, bound in sorted(gates.min.items()):
        value = metrics.get(name)
        if value is None:
            passed = False
            reasons.append(f"{name} was not computed, so gates.min.{name}={bound} cannot hold")
        elif value < bound:
            passed = False
            reasons.append(f"{name}={value:.4f} is below gates.min.{name}={bound}")
        else:
            reasons.append(f"{name}={value:.4f} meets gates.min.{name}={bound}")
    for name, bound in sorted(gates.max.items()):
        value = metrics.get(name)
        if value is None:
            passed = False
            reasons.append(f"{name} was not computed, so gates.max.{name}={bound} cannot hold")
        elif value > bound:
            passed = False
            reasons.append(f"{name}={value:.4f} is above gates.max.{name}={bound}")
        else:
            reasons.append(f"{name}={value:.4f} meets gates.max.{name}={bound}")
    if not reasons:
        reasons.append("no gates configured: accepted by default")
    return GateVerdict(passed=passed, reasons=reasons)
