"""Row rules: each row gets a reject reason or None, its label encoded, its types normalized.

Used by the validate stage inside ``Dataset.map_batches``; pure pandas, so it is tested
without Ray.
"""

from __future__ import annotations

from collections.abc import Collection

import pandas as pd

from raymlops.config import DataConfig

REASON = "_reject_reason"
LABEL = "_label"


def encode_label(values: pd.Series, data: DataConfig) -> tuple[pd.Series, pd.Series]:
    """Return (numeric label, reason-or-None) for each row."""
    reasons = pd.Series([None] * len(values), index=values.index, dtype=object)
    missing = values.isna()
    reasons[missing] = f"target {data.target!r} is missing"
    if data.task == "regression":
        label = pd.to_numeric(values, errors="coerce")
        bad = label.isna() & ~missing
        reasons[bad] = f"target {data.target!r} is not a number"
        return label.astype("float64"), reasons
    if data.positive_label is not None:
        text = values.astype(str)
        label = (text == str(data.positive_label)).astype("float64")
        return label.where(~missing), reasons
    text = values.astype(str).str.strip().str.lower()
    mapping = {"0": 0.0, "1": 1.0, "0.0": 0.0, "1.0": 1.0, "false": 0.0, "true": 1.0}
    label = text.map(mapping)
    bad = label.isna() & ~missing
    reasons[bad] = (f"target {data.target!r} is not 0/1 or true/false; "
                    "set data.positive_label for other label values")
    return label.astype("float64"), reasons


def _flag(mask: pd.Series, reason: str) -> pd.Series:
    """A reason where ``mask`` holds, None elsewhere."""
    out = pd.Series([None] * len(mask), index=mask.index, dtype=object)
    out[mask.to_numpy(dtype=bool)] = reason
    return out


class RowChecker:
    """Batch function: adds the reject reason and the encoded label, normalizes types.

    ``allowed`` maps a categorical column to its allowed values (the config's
    ``validation.allowed`` over the expected schema's sets); ``labels`` is the set of
    label values a classification target may take; ``duplicate_ids`` holds ids seen
    more than once in the whole dataset (found in a separate pass).
    """

    def __init__(self, data: DataConfig, numeric: list[str], categorical: list[str], *,
                 allowed: dict[str, list[str]] | None = None,
                 labels: Collection[str] | None = None,
                 duplicate_ids: Collection[str] = ()) -> None:
        self.data = data
        self.numeric = numeric
        self.categorical = categorical
        self.allowed = {k: set(v) for k, v in (allowed or data.validation.allowed).items()}
        self.labels = set(labels) if labels is not None else None
        self.duplicate_ids = set(duplicate_ids)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        out = batch.copy()
        data, rules = self.data, self.data.validation
        problems: list[pd.Series] = []
        target = out[data.target]
        if self.labels is not None:
            unseen = target.notna() & ~target.astype(str).isin(self.labels)
            problems.append(_flag(unseen, f"target {data.target!r} has a label value outside "
                                          f"the expected set {sorted(self.labels)}"))
        label, label_reason = encode_label(target, data)
        out[LABEL] = label
        problems.append(label_reason)
        for col in rules.not_null:
            if col in out.columns:
                problems.append(_flag(out[col].isna(), f"column {col!r} is null"))
        if self.duplicate_ids and data.id_column in out.columns:
            dup = out[data.id_column].astype(str).isin(self.duplicate_ids)
            problems.append(_flag(dup, f"id {data.id_column!r} is not unique"))
        for col in self.numeric:
            raw = out[col]
            if raw.dtype.kind not in "biuf":  # numbers stored as text: blanks are missing
                raw = raw.where(raw.isna() | raw.astype(str).str.strip().ne(""), None)
            number = pd.to_numeric(raw, errors="coerce").astype("float64")
            problems.append(_flag(number.isna() & raw.notna(), f"column {col!r} is not a number"))
            out[col] = number
            rule = rules.ranges.get(col)
            if rule is not None:
                low = number < rule.min if rule.min is not None else pd.Series(False, out.index)
                high = number > rule.max if rule.max is not None else pd.Series(False, out.index)
                problems.append(_flag(low | high,
                                      f"column {col!r} outside [{rule.min}, {rule.max}]"))
        for col in self.categorical:
            out[col] = out[col].map(_category).astype("string")
            allowed = self.allowed.get(col)
            if allowed is not None:
                bad = out[col].notna() & ~out[col].isin(allowed)
                problems.append(_flag(bad, f"column {col!r} has a value outside the allowed set"))
        out[REASON] = _join(problems, out.index)
        return out


def _join(problems: list[pd.Series], index: pd.Index) -> pd.Series:
    """All reasons of a row in one string, '; '-separated; None for a clean row."""
    reasons = pd.Series([None] * len(index), index=index, dtype=object)
    for series in problems:
        has = series.notna()
        if not has.any():
            continue
        current = reasons[has]
        joined = current.astype(str) + "; " + series[has].astype(str)
        reasons[has] = joined.where(current.notna(), series[has])
    return reasons


def _category(value: object) -> str | None:
    """Categories as stripped strings; empty strings (how CSV writes a hole) are missing."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    text = str(value).strip()
    return text or None


