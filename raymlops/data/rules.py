"""Row rules: each row gets a reject reason or None, its label encoded, its inputs normalized.

Used by the validate stage inside ``Dataset.map_batches``; pure pandas, so it is tested
without Ray. The inputs are normalized by the one row normalization
(``RowSpec.normalize``), the same function serving applies to requests; a value it
cannot normalize (a text in a number column, a non-finite number, a boolean) is the
row's reject reason.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np
import pandas as pd

from raymlops.config import DataConfig
from raymlops.features.normalize import RowSpec, canonical_categories, canonical_text, numbers_of
from raymlops.names import LABEL, REASON

#: What an unquoted YAML boolean ``positive_label: Yes`` stands for.
_TRUE_WORDS = frozenset({"true", "yes", "y", "on", "1"})
_FALSE_WORDS = frozenset({"false", "no", "n", "off", "0"})


def canonical_labels(values: Collection[object]) -> list[str]:
    """Label values as canonical texts (``1.0`` and ``1`` alike), for schema comparisons."""
    return sorted({t for t in (canonical_text(v) for v in values) if t is not None})


def positive_matches(positive: object, texts: pd.Series) -> pd.Series:
    """Which canonical label texts are the positive class, compared after case folding."""
    folded = texts.str.casefold()
    if isinstance(positive, bool):
        return folded.isin(_TRUE_WORDS if positive else _FALSE_WORDS)
    wanted = canonical_text(positive)
    return folded.eq(wanted.casefold() if wanted else "")


def encode_label(values: pd.Series, data: DataConfig,
                 positive: object = None) -> tuple[pd.Series, pd.Series]:
    """Return (numeric label, reason-or-None) for each row. ``positive`` is the positive
    class ingest inferred for a two-valued label (``data.positive_label`` wins)."""
    reasons = pd.Series([None] * len(values), index=values.index, dtype=object)
    if data.task == "regression":
        numbers, problems = numbers_of(values)
        label = pd.Series(numbers, index=values.index, dtype="float64")
        bad = np.zeros(len(values), dtype=bool)
        for mask in problems.values():
            bad |= mask
        reasons[bad] = f"target {data.target!r} is not a number"
        reasons[label.isna().to_numpy() & ~bad] = f"target {data.target!r} is missing"
        return label, reasons
    texts_raw, _ = canonical_categories(values)
    texts = pd.Series(texts_raw, index=values.index, dtype=object)
    missing = texts.isna()
    reasons[missing] = f"target {data.target!r} is missing"
    present = texts.where(~missing, "").astype(str)
    chosen = data.positive_label if data.positive_label is not None else positive
    if chosen is not None:
        label = positive_matches(chosen, present).astype("float64")
        return label.where(~missing), reasons
    mapping = {"0": 0.0, "1": 1.0, "false": 0.0, "true": 1.0}
    label = present.map(mapping)
    bad = label.isna() & ~missing
    reasons[bad] = (f"target {data.target!r} is not 0/1 or true/false; "
                    "set data.positive_label for other label values")
    return label.astype("float64"), reasons


def _flag(mask: np.ndarray | pd.Series, reason: str, index: pd.Index) -> pd.Series:
    """A reason where ``mask`` holds, None elsewhere."""
    out = pd.Series([None] * len(index), index=index, dtype=object)
    out[np.asarray(mask, dtype=bool)] = reason
    return out


def _blank(series: pd.Series) -> pd.Series:
    """Missing, or a text that is empty once stripped (how CSV writes a hole)."""
    texts = series.astype(object)
    return series.isna() | texts.map(lambda v: isinstance(v, str) and not v.strip())


class RowChecker:
    """Batch function: adds the reject reason and the encoded label, normalizes the inputs.

    ``allowed`` maps a categorical column to its allowed values (the config's
    ``validation.allowed`` over the expected schema's sets); ``labels`` is the set of
    label values a classification target may take; ``duplicate_ids`` holds ids seen
    more than once in the whole dataset (found in a separate pass).
    """

    def __init__(self, data: DataConfig, spec: RowSpec, *,
                 allowed: Mapping[str, Collection[object]] | None = None,
                 labels: Collection[str] | None = None,
                 duplicate_ids: Collection[str] = (), positive: str | None = None) -> None:
        self.data = data
        self.positive = positive
        self.spec = spec
        source = allowed if allowed is not None else data.validation.allowed
        self.allowed = {k: set(canonical_labels(v)) for k, v in source.items()}
        self.labels = set(canonical_labels(labels)) if labels is not None else None
        self.duplicate_ids = set(duplicate_ids)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        out = batch.copy()
        data, rules, index = self.data, self.data.validation, batch.index
        problems: list[pd.Series] = []
        target = out[data.target]
        if self.labels is not None:
            texts = pd.Series(canonical_categories(target)[0], index=index, dtype=object)
            unseen = texts.notna() & ~texts.isin(self.labels)
            problems.append(_flag(unseen, f"target {data.target!r} has a label value outside "
                                          f"the expected set {sorted(self.labels)}", index))
        label, label_reason = encode_label(target, data, self.positive)
        out[LABEL] = label
        problems.append(label_reason)
        if data.id_column and data.id_column in out.columns:
            problems.append(_flag(_blank(out[data.id_column]),
                                  f"id {data.id_column!r} is missing", index))
            if self.duplicate_ids:
                dup = out[data.id_column].astype(str).isin(self.duplicate_ids)
                problems.append(_flag(dup, f"id {data.id_column!r} is not unique", index))
        normalized = self.spec.normalize(out, protect=False)
        problems += [_flag(p.mask, p.reason(), index) for p in normalized.problems]
        clean = normalized.frame
        for col in self.spec.numeric:
            out[col] = clean[col].to_numpy(dtype="float64")
            rule = rules.ranges.get(col)
            if rule is not None:
                problems.append(_range_problem(out[col], col, rule.min, rule.max))
        for col in self.spec.categorical:
            out[col] = pd.array(clean[col].to_numpy(dtype=object), dtype="string")
            allowed = self.allowed.get(col)
            if allowed is not None:
                bad = out[col].notna() & ~out[col].isin(allowed)
                problems.append(_flag(bad, f"column {col!r} has a value outside the allowed set",
                                      index))
        problems += self._rules_beyond_the_inputs(out, label)
        inputs = set(self.spec.input_columns)
        for col in rules.not_null:
            if col in out.columns:
                empty = out[col].isna() if col in inputs else _blank(out[col])
                problems.append(_flag(empty, f"column {col!r} is null", index))
        out[REASON] = _join(problems, index)
        return out

    def _rules_beyond_the_inputs(self, out: pd.DataFrame, label: pd.Series) -> list[pd.Series]:
        """Ranges and allowed sets on columns that are not model inputs (the target, a
        column left out of the features): a rule the config names always applies."""
        data, index, found = self.data, out.index, []
        for col, rule in data.validation.ranges.items():
            if col in self.spec.numeric:
                continue
            if col == data.target and data.task == "regression":
                number = label
            elif col in out.columns:
                values, kinds = numbers_of(out[col])
                bad = np.zeros(len(out), dtype=bool)
                for mask in kinds.values():
                    bad |= mask
                found.append(_flag(bad, f"column {col!r} is not a number", index))
                number = pd.Series(values, index=index)
            else:
                continue
            found.append(_range_problem(number, col, rule.min, rule.max))
        for col, allowed in self.allowed.items():
            if col in self.spec.categorical or col not in out.columns:
                continue
            texts = pd.Series(canonical_categories(out[col])[0], index=index, dtype=object)
            found.append(_flag(texts.notna() & ~texts.isin(allowed),
                               f"column {col!r} has a value outside the allowed set", index))
        return found


def _range_problem(number: pd.Series, col: str, low: float | None,
                   high: float | None) -> pd.Series:
    index = number.index
    below = number < low if low is not None else pd.Series(False, index)
    above = number > high if high is not None else pd.Series(False, index)
    return _flag(below | above, f"column {col!r} outside [{low}, {high}]", index)


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


__all__ = ["LABEL", "REASON", "RowChecker", "canonical_labels", "encode_label"]
