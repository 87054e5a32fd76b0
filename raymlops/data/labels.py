"""The positive class of a two-valued label, when the config does not name it.

A real table brings labels such as Yes/No, True/False or churned/stayed. With
``data.positive_label`` unset and exactly two label values, the positive class is a
conventional positive word when one of the two is (yes, true, churned, fraud, ...), else
the minority class. The choice and its reason are logged, recorded with the model and
shown in its card; ``data.positive_label`` overrides it.
"""

from __future__ import annotations

from collections import Counter

from raymlops.features.normalize import canonical_text

#: Words that name the event a binary label records, compared after case folding.
POSITIVE_WORDS = frozenset({
    "1", "true", "yes", "y", "t", "positive", "pos", "churn", "churned", "default",
    "defaulted", "fraud", "fraudulent", "spam", "bad", "fail", "failed", "failure",
    "abnormal", "malignant", "event", "clicked", "converted", "purchased", "cancelled",
    "canceled", "left", "late",
})
NEGATIVE_WORDS = frozenset({"0", "false", "no", "n", "f", "negative", "neg", "stayed", "good",
                            "normal", "benign", "ok", "pass", "passed"})


def canonical_counts(counts: dict[str, int]) -> Counter[str]:
    """Label value counts with the values in their canonical texts (``1.0`` is ``1``)."""
    out: Counter[str] = Counter()
    for value, count in counts.items():
        text = canonical_text(value)
        if text is not None and value != "__missing__":
            out[text] += int(count)
    return out


def infer_positive(counts: dict[str, int]) -> tuple[str | None, str]:
    """(positive label or None, reason). None when the label is not two-valued, or is
    0/1 or true/false already (read as such without a choice)."""
    spelled = canonical_counts(counts)
    # Yes / yes / YES are one class: the label matches case-insensitively, so count so
    values: Counter[str] = Counter()
    spelling: dict[str, tuple[int, str]] = {}
    for text, count in spelled.items():
        values[text.casefold()] += count
        spelling[text.casefold()] = max(spelling.get(text.casefold(), (0, text)), (count, text))
    values = Counter({spelling[f][1]: n for f, n in values.items()})
    if len(values) != 2:
        return None, (f"the label has {len(values)} distinct values, not two: set "
                      "data.positive_label, or use 0/1 or true/false")
    folded = {v.casefold(): v for v in values}
    if set(folded) in ({"0", "1"}, {"false", "true"}):
        return None, "the label is 0/1 or true/false: 1 and true are positive"
    positive = [v for f, v in folded.items() if f in POSITIVE_WORDS]
    negative = [v for f, v in folded.items() if f in NEGATIVE_WORDS]
    if len(positive) == 1:
        other = next(v for v in values if v != positive[0])
        return positive[0], (f"{positive[0]!r} is a conventional positive word (the other "
                             f"value is {other!r})")
    if len(negative) == 1 and len(positive) == 0:
        chosen = next(v for v in values if v != negative[0])
        return chosen, f"{negative[0]!r} is a conventional negative word, so {chosen!r} is positive"
    (minority, low), (_, high) = sorted(values.items(), key=lambda kv: (kv[1], kv[0]))
    return minority, (f"{minority!r} is the minority class ({low} of {low + high} rows); no "
                      "value is a conventional positive word")
