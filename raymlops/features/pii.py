"""PII protection: the same code at ingest (on the table) and at serving (on each request).

``drop`` removes the column at ingest (a dropped column is never a model input).
``hash`` replaces each value by a keyed HMAC-SHA256 of its canonical text
(``raymlops.features.normalize.canonical_text``), so ``"C-1 "`` and ``"C-1"``, or ``7``
and ``"7.0"``, get one pseudonym; the key comes from the variable ``data.pii_key_env``
names (``RAYMLOPS_PII_KEY`` by default) or a per-workdir key file, and is never
logged or recorded: the model records only where to find it and its fingerprint.
``generalize`` keeps a coarse bucket and never more:

- an e-mail address keeps its domain: ``*@example.com``;
- a date or timestamp keeps its decade: ``2020-2029``;
- a number below 10,000 in size keeps its decade (ages, years): ``1970-1979``; a larger
  one only its order of magnitude (card and phone numbers written as digits):
  ``1e15-1e16``;
- any other text keeps its first character: ``5*`` for ``555-1234``.

Only these exact output forms count as already generalized, so applying it twice
changes nothing, and a raw value never passes through verbatim. A missing value
(None, NaN, pd.NA, a blank) stays missing under ``hash`` and ``generalize``.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import hashlib
import hmac
import math
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from raymlops.features.normalize import NUMBER_SHAPE, canonical_text, is_missing

PII_KEY_ENV = "RAYMLOPS_PII_KEY"
KEY_FILE = "pii.key"

_DECADE = re.compile(r"^(-?\d+)-(-?\d+)$")
_MAGNITUDE = re.compile(r"^(-?)1e(\d+)-(-?)1e(\d+)$")
_DOMAIN = re.compile(r"^\*@[^@\s]+$")
_INITIAL = re.compile(r"^\S\*$")
_EMAIL = re.compile(r"^[^@\s]+@([^@\s]+\.[^@\s]+)$")
_DATE = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])(?:-\d{2})?(?:[ T].*)?$")

#: Below this size a number keeps its decade; above it, only its order of magnitude.
_DECADE_LIMIT = 10_000


class PiiKeyError(RuntimeError):
    """The HMAC key of a hashed input column is not available (or is another key)."""


# -- the key -----------------------------------------------------------------------------


def key_id(key: bytes) -> str:
    """A fingerprint of the key that reveals nothing about it (recorded with the model)."""
    return hmac.new(key, b"raymlops pii key id", hashlib.sha256).hexdigest()[:16]


def load_pii_key(workdir: Path, env_var: str = PII_KEY_ENV) -> tuple[bytes, dict[str, str]]:
    """The HMAC key and where it comes from: the variable ``env_var`` if set, else
    ``<workdir>/pii.key``, made once with mode 0600."""
    from_env = os.environ.get(env_var)
    if from_env:
        key = from_env.encode()
        return key, {"env": env_var, "id": key_id(key)}
    path = workdir / KEY_FILE
    if not path.exists():
        workdir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    key = path.read_text().strip().encode()
    return key, {"env": env_var, "file": str(path.resolve()), "id": key_id(key)}


def resolve_key(ref: Mapping[str, str]) -> bytes:
    """The key a model's hashed inputs need, from the variable or file it recorded."""
    env = ref.get("env") or PII_KEY_ENV
    candidates = []
    if os.environ.get(env):
        candidates.append((f"${env}", os.environ[env].encode()))
    file = ref.get("file")
    if file and Path(file).is_file():
        candidates.append((file, Path(file).read_text().strip().encode()))
    for _where, key in candidates:
        if key_id(key) == ref.get("id"):
            return key
    tried = ", ".join(w for w, _ in candidates) or "nothing"
    raise PiiKeyError(
        f"this model hashes PII input columns with the key {ref.get('id')!r}, and {tried} "
        f"held another key or none; set ${env} to the key the training run used"
        + (f" or make {file} readable" if file else ""))


# -- the actions -------------------------------------------------------------------------


def hash_value(key: bytes, value: Any) -> str | None:
    text = canonical_text(value)
    if text is None:
        return None
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def _is_generalized(text: str) -> bool:
    match = _DECADE.match(text)
    if match:
        low, high = int(match[1]), int(match[2])
        return low % 10 == 0 and high == low + 9 and abs(low) < _DECADE_LIMIT
    match = _MAGNITUDE.match(text)
    if match:
        neg_low, low, neg_high, high = match[1], int(match[2]), match[3], int(match[4])
        return (not neg_low and not neg_high and high == low + 1 and low >= 4) or (
            bool(neg_low) and bool(neg_high) and low == high + 1 and high >= 4)
    return bool(_DOMAIN.match(text) or _INITIAL.match(text))


def _number_bucket(number: float | int) -> str | None:
    """A decade below 10,000 in size, else the order of magnitude. An integer too large
    for a float is bucketed by its digits (never an OverflowError)."""
    if isinstance(number, int):
        if abs(number) < _DECADE_LIMIT:
            low = number // 10 * 10
            return f"{low}-{low + 9}"
        exponent = len(str(abs(number))) - 1
    else:
        if not math.isfinite(number):
            return None
        if abs(number) < _DECADE_LIMIT:
            low = int(number // 10 * 10)
            return f"{low}-{low + 9}"
        exponent = math.floor(math.log10(abs(number)))
    if number > 0:
        return f"1e{exponent}-1e{exponent + 1}"
    return f"-1e{exponent + 1}--1e{exponent}"


def _decade_of_year(year: int) -> str:
    low = year // 10 * 10
    return f"{low}-{low + 9}"


def generalize_value(value: Any) -> str | None:  # noqa: PLR0911 - one bucket per kind
    """The coarse bucket of one value (see the module docstring); None when missing."""
    if is_missing(value):
        return None
    if isinstance(value, _dt.date | pd.Timestamp | np.datetime64):
        return _decade_of_year(pd.Timestamp(value).year)
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, int | np.integer):
        return _number_bucket(int(value))
    if isinstance(value, float | np.floating | decimal.Decimal):
        return _number_bucket(float(value))
    text = str(value).strip()
    if not text:
        return None
    if _is_generalized(text):
        return text
    email = _EMAIL.match(text)
    if email:
        return "*@" + email[1].lower()
    date = _DATE.match(text)
    if date:
        return _decade_of_year(int(date[1]))
    if NUMBER_SHAPE.match(text):
        digits = text.lstrip("+")
        if digits.lstrip("-").isdigit():
            return _number_bucket(int(digits))
        return _number_bucket(float(text))
    return text[:1] + "*"


def protect_column(series: pd.Series, action: str,
                   key: bytes | None) -> tuple[np.ndarray, np.ndarray]:
    """(protected values as an object array, not-a-scalar mask) for one column."""
    values = series.astype(object).to_numpy()
    out = np.empty(len(values), dtype=object)
    bad = np.zeros(len(values), dtype=bool)
    if action == "hash" and key is None:
        raise PiiKeyError("hashing a PII column needs its key; none was given")
    for i, value in enumerate(values):
        if isinstance(value, list | dict | tuple | set | np.ndarray):
            out[i], bad[i] = None, True
        elif action == "hash":
            out[i] = hash_value(key, value)  # type: ignore[arg-type]
        else:
            out[i] = generalize_value(value)
    return out, bad


class Protector:
    """The PII policy as a picklable batch function (``Dataset.map_batches`` at ingest)."""

    def __init__(self, actions: Mapping[str, str], key: bytes) -> None:
        self.actions = dict(actions)
        self._key = key

    def __repr__(self) -> str:  # never show the key
        return f"Protector({self.actions})"

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        out = batch.copy()
        for column, action in self.actions.items():
            if column not in out.columns:
                continue
            if action == "drop":
                out = out.drop(columns=[column])
                continue
            values, _ = protect_column(out[column], action, self._key)
            out[column] = pd.array(values, dtype="string")
        return out
