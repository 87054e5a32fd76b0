"""PII protection, applied at ingest before anything is written to disk or MLflow.

``drop`` removes the column, ``hash`` replaces each value by a keyed HMAC-SHA256
(the key comes from ``RAYMLOPS_PII_KEY`` or a per-workdir key file, and is never
logged), ``generalize`` keeps a coarse version: numbers become decade bands, e-mail
addresses keep their domain, other strings keep their first character.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

PII_KEY_ENV = "RAYMLOPS_PII_KEY"


def load_pii_key(workdir: Path, env_var: str = PII_KEY_ENV) -> bytes:
    """The HMAC key: the variable ``data.pii_key_env`` names (``RAYMLOPS_PII_KEY`` by
    default) if set, else ``<workdir>/pii.key``, made once with mode 0600."""
    from_env = os.environ.get(env_var)
    if from_env:
        return from_env.encode()
    path = workdir / "pii.key"
    if not path.exists():
        workdir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


def _hash_value(key: bytes, value: object) -> object:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return hmac.new(key, str(value).encode(), hashlib.sha256).hexdigest()


_GENERALIZED = re.compile(r"^(-?\d+--?\d+|\*@.*|.?\*)$")


def generalize_value(value: object) -> str | None:
    """Decade band for a number, domain for an e-mail, first character otherwise.

    Idempotent: a value that is already generalized stays as it is, so the serving path
    can apply it to raw requests with the same code the ingest applied to the table.
    """
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    text = str(value).strip()
    if _GENERALIZED.match(text):
        return text
    try:
        number = float(text)
    except ValueError:
        return "*@" + text.split("@", 1)[1] if "@" in text else text[:1] + "*"
    if not np.isfinite(number):
        return None
    low = int(number // 10 * 10)
    return f"{low}-{low + 9}"


def generalize(series: pd.Series) -> pd.Series:
    return series.map(generalize_value).astype("string")


class PiiTransform:
    """A picklable batch function for ``Dataset.map_batches``."""

    def __init__(self, actions: Mapping[str, str], key: bytes) -> None:
        self.actions = dict(actions)
        self._key = key

    def __repr__(self) -> str:  # never show the key
        return f"PiiTransform({self.actions})"

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        out = batch.copy()
        for column, action in self.actions.items():
            if column not in out.columns:
                continue
            if action == "drop":
                out = out.drop(columns=[column])
            elif action == "hash":
                out[column] = out[column].map(lambda v: _hash_value(self._key, v)).astype("string")
            else:
                out[column] = generalize(out[column])
        return out
