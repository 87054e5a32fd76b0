"""Quality gates: a verdict with its reasons, decided from configured thresholds."""

from __future__ import annotations

import math

from pydantic import BaseModel

from raymlops.config import GatesConfig


class GateVerdict(BaseModel):
    passed: bool
    reasons: list[str]


def _unknown(value: float | None) -> bool:
    """Missing or NaN: ``NaN < bound`` is false, so a NaN would otherwise pass every gate."""
    return value is None or math.isnan(value)


def decide(gates: GatesConfig, metrics: dict[str, float]) -> GateVerdict:
    reasons: list[str] = []
    passed = True
    for name, bound in sorted(gates.min.items()):
        value = metrics.get(name)
        if _unknown(value):
            passed = False
            reasons.append(f"{name} is {'NaN' if value is not None else 'not computed'}, so "
                           f"gates.min.{name}={bound} cannot hold")
        elif value is not None and value < bound:
            passed = False
            reasons.append(f"{name}={value:.4f} is below gates.min.{name}={bound}")
        else:
            reasons.append(f"{name}={value:.4f} meets gates.min.{name}={bound}")
    for name, bound in sorted(gates.max.items()):
        value = metrics.get(name)
        if _unknown(value):
            passed = False
            reasons.append(f"{name} is {'NaN' if value is not None else 'not computed'}, so "
                           f"gates.max.{name}={bound} cannot hold")
        elif value is not None and value > bound:
            passed = False
            reasons.append(f"{name}={value:.4f} is above gates.max.{name}={bound}")
        else:
            reasons.append(f"{name}={value:.4f} meets gates.max.{name}={bound}")
    if not reasons:
        reasons.append("no gates configured: accepted by default")
    return GateVerdict(passed=passed, reasons=reasons)
