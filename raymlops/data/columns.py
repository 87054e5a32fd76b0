"""Which columns the config names, and which columns are features.

A config cannot switch a check off by a typo: every column it names (rules, clipping,
PII, sensitive, feature lists, the id and the target) must exist in the source, or the
run stops with a ``ConfigError`` naming the key, the column and the closest existing
name. Features are the declared ones, or else inferred from the Arrow types: numbers
(decimals included) are numeric, strings and booleans categorical. Never by inference:
the target, the id column, PII columns, timestamps, null-typed columns, and a category
whose values are unique on nearly every row (an identifier, not a category). Each
excluded column is reported with its reason.
"""

from __future__ import annotations

import difflib

from raymlops.config import DataConfig
from raymlops.errors import ConfigError
from raymlops.features.stats import Merged

#: A category with at least this share of distinct values (over at least
#: ``_ID_MIN_ROWS`` rows) is an identifier.
_ID_SHARE = 0.9
_ID_MIN_ROWS = 20

_NUMBER_PREFIXES = ("int", "uint", "float", "double", "halffloat", "decimal")
_TIME_PREFIXES = ("timestamp", "date", "time", "duration")


def family(arrow_type: str) -> str:
    """number | bool | string | timestamp | null | other, from an Arrow type's name."""
    name = arrow_type.lower()
    if name.startswith(_NUMBER_PREFIXES):
        return "number"
    if name == "bool":
        return "bool"
    if name in ("string", "large_string", "string_view", "utf8", "large_utf8"):
        return "string"
    if name.startswith(_TIME_PREFIXES):
        return "timestamp"
    if name == "null":
        return "null"
    return "other"


def _missing(key: str, column: str, names: list[str]) -> ConfigError:
    close = difflib.get_close_matches(column, names, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"{key}: column {column!r} is not in the data{hint} "
                       f"(columns: {', '.join(names)})")


def named_columns(data: DataConfig) -> list[tuple[str, str]]:
    """Every (key, column) the data section names."""
    rules = data.validation
    named = [("data.target", data.target)]
    if data.id_column:
        named.append(("data.id_column", data.id_column))
    named += [(f"data.numeric[{i}]", c) for i, c in enumerate(data.numeric or [])]
    named += [(f"data.categorical[{i}]", c) for i, c in enumerate(data.categorical or [])]
    named += [(f"data.sensitive[{i}]", c) for i, c in enumerate(data.sensitive)]
    named += [(f"data.pii.{c}", c) for c in data.pii]
    named += [(f"data.clip.{c}", c) for c in data.clip]
    named += [(f"data.validation.not_null[{i}]", c) for i, c in enumerate(rules.not_null)]
    named += [(f"data.validation.ranges.{c}", c) for c in rules.ranges]
    named += [(f"data.validation.allowed.{c}", c) for c in rules.allowed]
    return named


def check_columns(data: DataConfig, names: list[str], *, protected: bool = False) -> None:
    """Raise a ConfigError for the first named column the source lacks.

    A column that ``data.pii`` drops is absent from a protected snapshot (a retrain), and
    no rule or feature can use it.
    """
    dropped = {c for c, action in data.pii.items() if action == "drop"}
    present = set(names)
    for key, column in named_columns(data):
        if key == f"data.pii.{column}":
            if column not in present and not (protected and column in dropped):
                raise _missing(key, column, names)
            continue
        if column in dropped and key != "data.id_column":  # a dropped id: rows split by hash
            raise ConfigError(f"{key}: column {column!r} is dropped by data.pii.{column}; "
                              "a dropped column can be neither checked nor used")
        if column not in present:
            raise _missing(key, column, names)
    declared_numeric = set(data.numeric or [])
    for column, action in data.pii.items():
        if column in declared_numeric and action in ("hash", "generalize"):
            what = "a keyed hash" if action == "hash" else "a generalized bucket"
            raise ConfigError(f"data.numeric: column {column!r} is PII with action {action!r}, "
                              f"and {what} is not a number; declare it in data.categorical")


def infer_feature_types(schema: dict[str, str], data: DataConfig) -> tuple[  # noqa: PLR0912
        list[str], list[str], dict[str, str], set[str]]:
    """(numeric, categorical, excluded column -> reason, timestamp columns named numeric)."""
    declared_numeric, declared_categorical = data.numeric, data.categorical
    numeric = list(declared_numeric or [])
    categorical = list(declared_categorical or [])
    declared = set(numeric) | set(categorical)
    excluded: dict[str, str] = {data.target: "the target (data.target)"}
    if data.id_column:
        excluded[data.id_column] = "the id column (data.id_column)"
    for column, action in data.pii.items():
        if column not in declared and column in schema:
            excluded[column] = (f"PII (data.pii: {action}); PII is a feature only when "
                                "declared in data.categorical")
    timestamps = {c for c in numeric if family(schema.get(c, "")) == "timestamp"}
    for column, arrow_type in schema.items():
        if column in excluded or column in declared:
            continue
        kind = family(arrow_type)
        if kind == "timestamp":
            excluded[column] = (f"a timestamp ({arrow_type}); name it in data.numeric "
                                "(seconds since the epoch) or data.categorical to use it")
        elif kind == "null":
            excluded[column] = "holds no values (Arrow type null)"
        elif kind == "other":
            excluded[column] = f"type {arrow_type} is not a feature type"
        elif kind == "number":
            if declared_numeric is None:
                numeric.append(column)
            else:
                excluded[column] = "not in the declared data.numeric"
        elif declared_categorical is None:
            categorical.append(column)
        else:
            excluded[column] = "not in the declared data.categorical"
    return numeric, categorical, excluded, timestamps


def drop_identifiers(categorical: list[str], merged: Merged,
                     data: DataConfig) -> tuple[list[str], dict[str, str]]:
    """Inferred categories whose values are unique on nearly every row are identifiers."""
    declared = set(data.categorical or [])
    kept, dropped = [], {}
    for column in categorical:
        distinct, rows = merged.distinct.get(column, (0, 0))
        if column not in declared and rows >= _ID_MIN_ROWS and distinct >= _ID_SHARE * rows:
            dropped[column] = (f"looks like an identifier: {distinct} distinct values in "
                               f"{rows} rows; declare it in data.categorical to use it")
        else:
            kept.append(column)
    return kept, dropped
