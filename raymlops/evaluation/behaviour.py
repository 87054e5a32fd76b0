"""Behavioural checks of a candidate on its holdout rows (CheckList-style tests).

- invariance: setting a named feature to each of its values (a sensitive attribute,
  say) moves no row's score by more than ``epsilon``;
- direction: raising a numeric feature by ``delta`` (one standard deviation by default)
  never lowers (``non_decreasing``) or never raises (``non_increasing``) the score,
  beyond ``max_violations`` of the rows;
- slices: every slice of the named columns with at least ``min_rows`` rows meets the
  minimum metrics.

Each gives one ``Rule`` per check, with the worst value and the reason.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from raymlops.evaluation.gates import Rule

SAMPLE_ROWS = 2000


def _sample(frame: pd.DataFrame) -> pd.DataFrame:
    if len(frame) <= SAMPLE_ROWS:
        return frame
    keep = np.sort(np.random.default_rng(0).choice(len(frame), SAMPLE_ROWS, replace=False))
    return frame.iloc[keep]


def invariance(model: Any, frame: pd.DataFrame, check: Any) -> Rule:
    rows = _sample(frame)
    base = model.predict_normalized(rows)
    feature = check.feature
    features = model.features
    if feature not in (*features.numeric, *features.categorical):
        # perturbing a column the model never reads proves nothing: fail, do not pass
        return Rule(rule=f"gates.invariance.{feature}", kind="invariance", value=None,
                    bound=f"<= {check.epsilon}", passed=False,
                    reason=f"{feature} is not an input of the model, so invariance to it "
                           "cannot be tested (a typo, or a column excluded from features)")
    if check.values is not None:
        values = list(check.values)
    elif feature in features.categorical:
        values = [v for v in features.vocab[feature] if v != "__missing__"]
    else:
        values = ["+1sd", "-1sd"]
    worst, at = 0.0, None
    for value in values:
        perturbed = rows.copy()
        if value in ("+1sd", "-1sd") and feature in features.numeric:
            step = features.scales[feature] * (1 if value == "+1sd" else -1)
            perturbed[feature] = rows[feature] + step
        else:
            perturbed[feature] = value
        moved = float(np.max(np.abs(model.predict_normalized(perturbed) - base)))
        if moved > worst:
            worst, at = moved, value
    rule = f"gates.invariance.{feature}"
    ok = worst <= check.epsilon
    return Rule(rule=rule, kind="invariance", value=worst, bound=f"<= {check.epsilon}",
                passed=ok, reason=f"setting {feature} to each of {len(values)} values moves a "
                f"score by at most {worst:.4f} (worst at {at!r}; {len(rows)} rows), "
                f"{'within' if ok else 'above'} epsilon {check.epsilon}")


def direction(model: Any, frame: pd.DataFrame, check: Any) -> Rule:
    rows = _sample(frame)
    feature = check.feature
    rule = f"gates.direction.{feature}"
    if feature not in model.features.numeric:
        return Rule(rule=rule, kind="direction", value=None, bound=check.direction,
                    passed=False, reason=f"{feature} is not a numeric input of the model")
    delta = check.delta if check.delta is not None else model.features.scales[feature]
    base = model.predict_normalized(rows)
    raised = rows.copy()
    raised[feature] = rows[feature] + delta
    change = model.predict_normalized(raised) - base
    tolerance = 1e-9
    wrong = change < -tolerance if check.direction == "non_decreasing" else change > tolerance
    share = float(wrong.mean()) if len(wrong) else 0.0
    ok = share <= check.max_violations
    moved = "lowered" if check.direction == "non_decreasing" else "raised"
    return Rule(rule=rule, kind="direction", value=share,
                bound=f"share of violations <= {check.max_violations}", passed=ok,
                reason=f"raising {feature} by {delta:.4g} {moved} the score on {share:.2%} of "
                f"{len(rows)} rows (expected {check.direction.replace('_', '-')}; allowed "
                f"{check.max_violations:.2%})")


def slice_minimums(slices: dict[str, dict[str, dict[str, float]]], check: Any) -> list[Rule]:
    rules = []
    columns = check.columns or list(slices)
    for metric, bound in sorted(check.min.items()):
        worst_value, worst_slice, judged = None, None, 0
        for column in columns:
            for group, stats in slices.get(column, {}).items():
                if stats.get("rows", 0) < check.min_rows:
                    continue
                judged += 1
                value = stats.get(metric)
                if value is None or np.isnan(value):
                    worst_value, worst_slice = float("nan"), f"{column}={group}"
                    break
                if worst_value is None or value < worst_value:
                    worst_value, worst_slice = value, f"{column}={group}"
        rule = f"gates.slices.min.{metric}"
        if worst_value is None:
            rules.append(Rule(rule=rule, kind="slice", value=None, bound=f">= {bound}",
                              passed=False, reason=f"no slice of {columns} has "
                              f"{check.min_rows} rows to judge {metric} on"))
            continue
        ok = not np.isnan(worst_value) and worst_value >= bound
        rules.append(Rule(rule=rule, kind="slice", value=worst_value, bound=f">= {bound}",
                          passed=ok, reason=f"the worst of {judged} slices is {worst_slice} with "
                          f"{metric}={worst_value:.4f}, {'meets' if ok else 'below'} {bound}"))
    return rules
