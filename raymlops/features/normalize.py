"""The one row normalization: what every entry point does to a raw value before features.

Validation (on the ingested snapshot), training, evaluation, the pyfunc model and both
HTTP protocols call :meth:`RowSpec.normalize`; nothing else cleans a row. It is recorded
with the model (inside ``features.json``), so a served version normalizes exactly as its
training data was normalized.

Numbers (``RowSpec.numeric``) become float64. Accepted: numbers of any width, decimals,
and numbers sent as text (stripped). Missing: None, NaN, pd.NA, and the texts in
``MISSING_TEXT`` (a blank, and the null markers Arrow's and pandas' CSV readers use).
Rejected, each with its own problem kind: booleans, non-finite values (``1e400``,
``inf``), integers too large for a float, and anything else.

Categories (``RowSpec.categorical``) become one canonical text: stripped; a blank is
missing; ``true``/``false`` in any case (and booleans) are ``"true"``/``"false"``; a
number, or a text that is exactly a number (no leading zeros, so ``"007"`` stays a code),
is written the same way whatever its type, so ``2``, ``2.0``, ``"2"`` and ``"2.0"`` are
all ``"2"``. Lists and objects are rejected.

With ``protect=True`` (a raw row: a request, or a fresh table), the dataset's PII policy
is applied to the input columns it names, with the same code ingest uses
(``raymlops.features.pii``). Rows already ingested are protected and normalized, and
normalizing them again changes nothing.
"""

from __future__ import annotations

import decimal
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

#: Texts read as a missing number: a blank, and the CSV null markers of Arrow and pandas.
MISSING_TEXT = frozenset({
    "", "NA", "N/A", "n/a", "NaN", "nan", "-NaN", "-nan", "null", "NULL", "None", "none",
    "<NA>", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "1.#IND", "1.#QNAN",
})

#: A text that is exactly a number: no leading zeros (``"007"`` is a code, not 7).
_NUMBER_TEXT = re.compile(r"^[+-]?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$|^[+-]?\.\d+$")
_INT_TEXT = re.compile(r"^[+-]?(?:0|[1-9]\d*)$")
NUMBER_SHAPE = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")

#: Problem kinds, and how validation words them as a quarantine reason.
REASONS = {
    "not_a_number": "column {column!r} is not a number",
    "not_finite": "column {column!r} is not a finite number",
    "boolean": "column {column!r} holds a boolean where a number is expected",
    "out_of_range": "column {column!r} holds a number too large for a float",
    "not_scalar": "column {column!r} holds a list or object, not a scalar",
}
#: And how the HTTP protocols word them for a client.
MESSAGES = {
    "not_a_number": "expected a number, got {value!r}",
    "not_finite": "expected a finite number, got {value!r}",
    "boolean": "expected a number, got the boolean {value!r}",
    "out_of_range": "the number {value!r} is too large for a float",
    "not_scalar": "expected a scalar value, got {value!r}",
}


@dataclass(frozen=True)
class Problem:
    """Rows of one column that cannot be normalized, all for one reason."""

    column: str
    kind: str
    mask: np.ndarray  # bool, one per row

    def first_row(self) -> int:
        return int(np.flatnonzero(self.mask)[0])

    def reason(self) -> str:
        return REASONS[self.kind].format(column=self.column)

    def message(self, frame: pd.DataFrame) -> str:
        row = self.first_row()
        value = frame[self.column].iloc[row] if self.column in frame.columns else None
        text = repr(value)
        return MESSAGES[self.kind].replace("{value!r}", text if len(text) <= 60
                                           else text[:57] + "...")


@dataclass
class Normalized:
    frame: pd.DataFrame
    problems: list[Problem] = field(default_factory=list)


def is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float | np.floating):
        return bool(np.isnan(value))
    return False


# -- canonical texts -----------------------------------------------------------------


def canonical_number(value: float | int | np.integer | np.floating) -> str:
    """``2`` and ``2.0`` alike: integral values without a decimal point, others as repr."""
    if isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_):
        return str(int(value))
    number = float(value)
    if np.isfinite(number) and number == np.trunc(number) and abs(number) < 2**63:
        return str(int(number))
    return repr(number)


def canonical_text(value: Any) -> str | None:  # noqa: PLR0911 - one case per type
    """The canonical category text of one scalar (None when missing).

    Raises ``TypeError`` for lists and objects.
    """
    if is_missing(value):
        return None
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, int | float | np.integer | np.floating):
        return canonical_number(value)
    if isinstance(value, decimal.Decimal):
        return canonical_number(float(value)) if value.is_finite() else str(value)
    if isinstance(value, list | dict | tuple | set | np.ndarray):
        raise TypeError("not a scalar")
    text = str(value).strip()
    if not text:
        return None
    if text.lower() in ("true", "false"):
        return text.lower()
    if _NUMBER_TEXT.match(text):
        if _INT_TEXT.match(text):
            return str(int(text))
        return canonical_number(float(text))
    return text


def _canonical_floats(values: np.ndarray) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    missing = np.isnan(values)
    integral = ~missing & np.isfinite(values) & (np.abs(values) < 2**63)
    integral &= values == np.trunc(np.where(integral, values, 0.0))
    out[integral] = values[integral].astype(np.int64).astype(str)
    rest = ~missing & ~integral
    out[rest] = [repr(float(v)) for v in values[rest]]
    out[missing] = None
    return out


def _is_string_dtype(dtype: Any) -> bool:
    return isinstance(dtype, pd.StringDtype) or (
        isinstance(dtype, pd.ArrowDtype) and dtype.kind in "OSU"
        and str(dtype.pyarrow_dtype) in ("string", "large_string", "string_view"))


def _is_number_dtype(dtype: Any) -> bool:
    if pd.api.types.is_bool_dtype(dtype):
        return False
    return bool(pd.api.types.is_numeric_dtype(dtype))


def canonical_categories(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(canonical texts as an object array with None for missing, not-a-scalar mask)."""
    n = len(series)
    bad = np.zeros(n, dtype=bool)
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        values = series.astype(object).to_numpy()
        out = np.array([None if is_missing(v) else ("true" if v else "false") for v in values],
                       dtype=object)
        return out, bad
    if _is_number_dtype(dtype):
        if pd.api.types.is_integer_dtype(dtype):
            # exact, whatever the width or the holes: never through float64 (2**53 + 1)
            texts = series.astype(object).to_numpy()
            return np.array([None if is_missing(v) else str(int(v)) for v in texts],
                            dtype=object), bad
        return _canonical_floats(series.to_numpy(dtype="float64", na_value=np.nan)), bad
    if _is_string_dtype(dtype):
        stripped = series.str.strip()
        missing = (series.isna() | stripped.eq("")).to_numpy(dtype=bool, na_value=True)
        out = stripped.astype(object).to_numpy().copy()
        lower = stripped.str.lower()
        words = lower.isin(["true", "false"]).to_numpy(dtype=bool, na_value=False)
        out[words] = lower.to_numpy(dtype=object)[words]
        numeric = stripped.str.fullmatch(_NUMBER_TEXT.pattern).to_numpy(dtype=bool,
                                                                       na_value=False)
        if numeric.any():
            out[numeric] = [canonical_text(v) for v in out[numeric]]
        out[missing] = None
        return out, bad
    values = series.astype(object).to_numpy()
    out = np.empty(n, dtype=object)
    for i, value in enumerate(values):
        try:
            out[i] = canonical_text(value)
        except TypeError:
            out[i], bad[i] = None, True
    return out, bad


# -- numbers -------------------------------------------------------------------------


def _number_from_text(texts: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, not-a-number mask, not-finite mask) of stripped texts."""
    missing = texts.isna() | texts.isin(MISSING_TEXT)
    candidates = texts.where(~missing)
    shaped = candidates.str.fullmatch(NUMBER_SHAPE.pattern).fillna(False).astype(bool)
    numbers = pd.to_numeric(candidates.where(shaped), errors="coerce").to_numpy(
        dtype="float64", na_value=np.nan)
    not_number = (~missing & ~shaped).to_numpy(dtype=bool)
    return numbers, not_number, np.isinf(numbers)


_EPOCH = pd.Timestamp(0, tz="UTC")


def seconds_of(series: pd.Series) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A timestamp column as seconds since the epoch, whatever its unit or form.

    Arrow's CSV reader gives ``timestamp[s]``, a JSON client an ISO text or an epoch
    number: all become the same float. A number is taken as epoch seconds; a blank or a
    missing marker is missing; a text that is no timestamp is a problem.
    """
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        stamps = pd.to_datetime(series, utc=True)
        values = ((stamps - _EPOCH) / pd.Timedelta(seconds=1)).to_numpy(dtype="float64",
                                                                         na_value=np.nan)
        return values, {}
    values, problems = numbers_of(series)
    texts = series.astype(object)
    tried = pd.Series([v.strip() if isinstance(v, str) else v for v in texts], dtype=object)
    wanted = problems.pop("not_a_number", np.zeros(len(series), dtype=bool))
    if wanted.any():
        stamps = pd.to_datetime(tried[wanted], errors="coerce", utc=True, format="mixed")
        parsed = ((stamps - _EPOCH) / pd.Timedelta(seconds=1)).to_numpy(dtype="float64",
                                                                         na_value=np.nan)
        values[wanted] = parsed
        problems["not_a_number"] = np.zeros(len(series), dtype=bool)
        problems["not_a_number"][wanted] = np.isnan(parsed)
    return values, problems


def numbers_of(series: pd.Series, *,  # noqa: PLR0912 - one branch per input kind
               datetime: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A column as float64, with a mask per problem kind."""
    n = len(series)
    dtype = series.dtype
    problems: dict[str, np.ndarray] = {}
    if datetime:
        return seconds_of(series)
    if pd.api.types.is_bool_dtype(dtype):
        problems["boolean"] = series.notna().to_numpy(dtype=bool)
        return np.full(n, np.nan), problems
    if _is_number_dtype(dtype):
        values = series.to_numpy(dtype="float64", na_value=np.nan)
        problems["not_finite"] = np.isinf(values)
        return np.where(np.isinf(values), np.nan, values), problems
    if _is_string_dtype(dtype):
        values, not_number, not_finite = _number_from_text(series.str.strip())
        problems["not_a_number"], problems["not_finite"] = not_number, not_finite
        return np.where(not_finite, np.nan, values), problems
    values = np.full(n, np.nan)
    masks = {kind: np.zeros(n, dtype=bool) for kind in
             ("not_a_number", "not_finite", "boolean", "out_of_range", "not_scalar")}
    texts: dict[int, str] = {}
    for i, value in enumerate(series.astype(object).to_numpy()):
        if is_missing(value):
            continue
        if isinstance(value, bool | np.bool_):
            masks["boolean"][i] = True
        elif isinstance(value, int | np.integer):
            try:
                values[i] = float(value)
            except OverflowError:
                masks["out_of_range"][i] = True
        elif isinstance(value, float | np.floating | decimal.Decimal):
            number = float(value)
            if np.isfinite(number):
                values[i] = number
            elif not np.isnan(number):
                masks["not_finite"][i] = True
        elif isinstance(value, str):
            texts[i] = value.strip()
        else:
            masks["not_scalar" if isinstance(value, list | dict | tuple) else
                  "not_a_number"][i] = True
    if texts:
        index = np.fromiter(texts, dtype=np.int64, count=len(texts))
        parsed, not_number, not_finite = _number_from_text(pd.Series(list(texts.values()),
                                                                     dtype=object))
        values[index] = np.where(not_finite | not_number, np.nan, parsed)
        masks["not_a_number"][index] |= not_number
        masks["not_finite"][index] |= not_finite
    return values, masks


# -- the spec ------------------------------------------------------------------------


@dataclass
class RowSpec:
    """How raw rows of one dataset become model inputs; JSON round-trips exactly.

    ``pii`` holds the PII action of each input column (``hash`` or ``generalize``; a
    dropped column is never an input); ``pii_key`` says where the HMAC key of hashed
    columns comes from at serving (``env``, ``file``) and which key it must be (``id``).
    ``datetime`` names numeric inputs read from timestamps (seconds since the epoch).
    """

    numeric: list[str]
    categorical: list[str]
    pii: dict[str, str] = field(default_factory=dict)
    pii_key: dict[str, str] | None = None
    datetime: list[str] = field(default_factory=list)

    @property
    def input_columns(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    @property
    def hashed(self) -> list[str]:
        return [c for c, action in self.pii.items() if action == "hash"]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> RowSpec:
        return cls(**dict(raw))

    def normalize(self, frame: pd.DataFrame, *, protect: bool,
                  key: bytes | None = None) -> Normalized:
        """The input columns of ``frame``, normalized (numbers float64, categories as
        canonical text or None), with the problems found. Missing columns are an error
        of the caller (``KeyError``)."""
        from raymlops.features.pii import protect_column

        out: dict[str, Any] = {}
        problems: list[Problem] = []
        for column in self.numeric:
            values, masks = numbers_of(frame[column], datetime=column in self.datetime)
            out[column] = values
            problems += [Problem(column, kind, mask) for kind, mask in masks.items()
                         if mask.any()]
        for column in self.categorical:
            action = self.pii.get(column)
            if protect and action is not None:
                values, bad = protect_column(frame[column], action, key)
            elif action == "hash":
                values, bad = _already_protected(frame[column])
            else:
                values, bad = canonical_categories(frame[column])
            # object dtype, so that pandas keeps None as the missing category
            out[column] = pd.Series(values, index=frame.index, dtype=object)
            if bad.any():
                problems.append(Problem(column, "not_scalar", bad))
        normalized = pd.DataFrame(out, index=frame.index, columns=self.input_columns)
        return Normalized(normalized, problems)


def _already_protected(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Hashed values are canonical already: keep them as they are, blanks missing."""
    values = series.astype(object).to_numpy().copy()
    for i, value in enumerate(values):
        if is_missing(value) or (isinstance(value, str) and not value.strip()):
            values[i] = None
    return values, np.zeros(len(values), dtype=bool)
