"""Quality gates: every rule with its value, its bound, pass or fail, and the reason.

Kinds of rule, all from ``gates`` in the config:

- absolute thresholds: ``min: {roc_auc: 0.7}``, ``max: {log_loss: 0.5}``;
- champion-relative rules with MLflow's ``MetricThreshold`` semantics, evaluated on the
  same holdout rows for the candidate and the model serving today:
  ``champion: {roc_auc: {min_absolute_change: 0.0}}`` (``threshold``,
  ``min_absolute_change``, ``min_relative_change``, ``greater_is_better``);
- fairness bounds per sensitive column: ``fairness: {gender:
  {demographic_parity_difference: {max: 0.1}}}``;
- behavioural checks: ``invariance`` (perturbing a feature moves scores by at most
  ``epsilon``), ``direction`` (raising a feature must not lower, or must not raise, the
  score), and ``slices`` (a minimum metric on every named slice).

A metric that is NaN or missing fails its rule, with the reason: ``NaN < bound`` is false.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel

from raymlops.config import GatesConfig
from raymlops.evaluation.fairness import left_out

#: The evaluation metrics where higher is better (the rest: lower is better).
GREATER_IS_BETTER = frozenset({"roc_auc", "pr_auc", "accuracy", "f1", "precision", "recall",
                               "r2"})


class Rule(BaseModel):
    rule: str
    kind: str
    value: float | None
    bound: str
    passed: bool
    reason: str


class GateVerdict(BaseModel):
    passed: bool
    rules: list[Rule] = []

    @property
    def reasons(self) -> list[str]:
        return [r.reason for r in self.rules] or ["no gates configured: accepted by default"]


def _unknown(value: float | None) -> bool:
    return value is None or math.isnan(value)


def _absolute(name: str, value: float | None, bound: float, side: str) -> Rule:
    rule = f"gates.{side}.{name}"
    if _unknown(value):
        what = "NaN" if value is not None else "not computed"
        return Rule(rule=rule, kind="absolute", value=value, bound=f"{side} {bound}",
                    passed=False, reason=f"{name} is {what}, so {rule}={bound} cannot hold")
    assert value is not None
    ok = value >= bound if side == "min" else value <= bound
    word = ("meets" if ok else "is below") if side == "min" else ("meets" if ok else "is above")
    return Rule(rule=rule, kind="absolute", value=value, bound=f"{'>=' if side == 'min' else '<='} "
                f"{bound}", passed=ok, reason=f"{name}={value:.4f} {word} {rule}={bound}")


def champion_rule(name: str, spec: Any, candidate: float | None,
                  champion: float | None, champion_label: str) -> Rule:
    """MLflow's MetricThreshold: the candidate must meet ``threshold`` and beat the
    champion by ``min_absolute_change`` and by ``min_relative_change`` (of |champion|)."""
    rule = f"gates.champion.{name}"
    better = spec.greater_is_better if spec.greater_is_better is not None else \
        name in GREATER_IS_BETTER
    sign = 1.0 if better else -1.0
    if _unknown(candidate):
        return Rule(rule=rule, kind="champion", value=candidate, bound="vs champion",
                    passed=False, reason=f"{name} of the candidate is not a number")
    assert candidate is not None
    failures, bounds = [], []
    if spec.threshold is not None:
        ok = candidate >= spec.threshold if better else candidate <= spec.threshold
        bounds.append(f"{'>=' if better else '<='} {spec.threshold}")
        if not ok:
            failures.append(f"{candidate:.4f} does not meet the threshold {spec.threshold}")
    if champion is None:
        note = f"no champion serves yet, so {rule} has no champion to beat"
        if bounds:
            note += f" and only its threshold ({bounds[0]}) applies"
        return Rule(rule=rule, kind="champion", value=candidate, bound=", ".join(bounds) or
                    "vs champion", passed=not failures,
                    reason="; ".join(failures) or note)
    if _unknown(champion):
        return Rule(rule=rule, kind="champion", value=candidate, bound="vs champion",
                    passed=False, reason=f"{name} of the champion ({champion_label}) is NaN")
    change = sign * (candidate - champion)
    if spec.min_absolute_change is not None:
        bounds.append(f"champion {champion:.4f} {'+' if better else '-'} "
                      f"{spec.min_absolute_change}")
        if change < spec.min_absolute_change:
            failures.append(f"{name}={candidate:.4f} against the champion's {champion:.4f} "
                            f"({champion_label}): a change of {change:+.4f}, below the "
                            f"required {spec.min_absolute_change:+}")
    if spec.min_relative_change is not None and champion == 0:
        # MLflow: against a baseline of 0 the candidate must simply be better
        bounds.append("better than the champion's 0 (a relative change of 0 is undefined)")
        if change <= 0:
            failures.append(f"{name}={candidate:.4f} is not better than the champion's 0 "
                            f"({champion_label}); min_relative_change needs it to be")
    elif spec.min_relative_change is not None:
        relative = change / abs(champion)
        bounds.append(f"relative change >= {spec.min_relative_change}")
        if relative < spec.min_relative_change:
            failures.append(f"{name} changed by {relative:+.2%} against the champion's "
                            f"{champion:.4f} ({champion_label}), below "
                            f"{spec.min_relative_change:+.2%}")
    reason = "; ".join(failures) or (f"{name}={candidate:.4f} against the champion's "
                                     f"{champion:.4f} ({champion_label}): {change:+.4f}")
    return Rule(rule=rule, kind="champion", value=candidate, bound=", ".join(bounds),
                passed=not failures, reason=reason)


def decide(gates: GatesConfig, metrics: dict[str, float], *,
           champion: dict[str, float] | None = None, champion_label: str = "",
           fairness: dict[str, dict[str, Any]] | None = None,
           behaviour: list[Rule] | None = None) -> GateVerdict:
    rules: list[Rule] = []
    for name, bound in sorted(gates.min.items()):
        rules.append(_absolute(name, metrics.get(name), bound, "min"))
    for name, bound in sorted(gates.max.items()):
        rules.append(_absolute(name, metrics.get(name), bound, "max"))
    for name, spec in sorted(gates.champion.items()):
        rules.append(champion_rule(name, spec, metrics.get(name),
                                   None if champion is None else champion.get(name, math.nan),
                                   champion_label))
    for column, bounds in sorted(gates.fairness.items()):
        numbers = (fairness or {}).get(column, {})
        small = left_out(numbers)
        judged = len(numbers.get("groups") or {}) - len(numbers.get("not_judged") or {})
        for measure, limit in sorted(bounds.items()):
            value = numbers.get(measure)
            rule = f"gates.fairness.{column}.{measure}"
            if _unknown(value):
                if not numbers:
                    why = "is the column in data.sensitive?"
                elif judged < 2:
                    why = (f"{judged} group(s) to compare, two are needed"
                           + (f"; {small}" if small else ""))
                else:
                    why = ("undefined for these decisions: a group without a selected row, "
                           "or without a positive or negative label" + (
                               f"; {small}" if small else ""))
                rules.append(Rule(rule=rule, kind="fairness", value=value, bound=str(limit),
                                  passed=False, reason=f"{measure} of {column} was not computed"
                                  f" ({why})"))
                continue
            assert value is not None
            ok = (limit.min is None or value >= limit.min) and (
                limit.max is None or value <= limit.max)
            limits = " and ".join(b for b in (
                f">= {limit.min}" if limit.min is not None else "",
                f"<= {limit.max}" if limit.max is not None else "") if b)
            rules.append(Rule(rule=rule, kind="fairness", value=value, bound=limits, passed=ok,
                              reason=f"{measure} of {column} is {value:.4f}, "
                                     f"{'within' if ok else 'outside'} {limits}"
                                     + (f"; {small}" if small else "")))
    rules += behaviour or []
    return GateVerdict(passed=all(r.passed for r in rules), rules=rules)
