"""A deterministic demo table shaped like a real consumer-lending table.

``make_lending_table(rows, seed)`` gives a reference batch; ``drifted=True`` gives a
"production" batch whose inputs drift in a known way (``DRIFTED_COLUMNS``) while the
relationship between features and label stays the same. The table has numeric and
categorical features, an e-mail address as the id (personal data), a sensitive
attribute (``gender``), missing values, and a binary label with real but imperfect
signal (ROC AUC of the true score is about 0.8).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

TARGET = "defaulted"
ID_COLUMN = "email"
SENSITIVE = ("gender",)
NUMERIC = (
    "age",
    "income",
    "loan_amount",
    "credit_score",
    "debt_to_income",
    "employment_years",
    "open_accounts",
)
CATEGORICAL = ("home_ownership", "purpose", "region", "gender")
#: each value's share of ``gender`` (the sensitive attribute)
GENDER_SHARES = {"F": 0.48, "M": 0.49, "X": 0.03}

#: Columns whose distribution moves in the production batch, and how.
DRIFTED_COLUMNS = {
    "income": "scaled by 0.7 (a downturn)",
    "credit_score": "shifted down by 45 points",
    "purpose": "'medical' grows from 6% to 30% of loans",
}

_PURPOSES = ["debt_consolidation", "credit_card", "home_improvement", "car", "medical", "other"]
_PURPOSE_P = [0.38, 0.22, 0.12, 0.12, 0.06, 0.10]
_PURPOSE_P_DRIFT = [0.28, 0.16, 0.08, 0.10, 0.30, 0.08]
_HOME = ["RENT", "MORTGAGE", "OWN", "OTHER"]
_REGIONS = ["north", "south", "east", "west"]
_FIRST = ["ana", "ben", "chen", "dara", "eli", "fatima", "goran", "hana", "ivan", "jo"]
_DOMAINS = ["example.com", "mail.test", "inbox.example"]


def make_lending_table(rows: int, seed: int = 0, *, drifted: bool = False) -> pd.DataFrame:
    """Generate ``rows`` loan applications, deterministic for a given ``seed``."""
    if rows < 1:
        raise ValueError("rows must be at least 1")
    rng = np.random.default_rng(seed)
    age = np.clip(rng.normal(41, 12, rows), 18, 90).round()
    income = np.exp(rng.normal(10.9, 0.45, rows)).round(-2)
    credit = np.clip(rng.normal(680, 60, rows), 300, 850).round()
    purpose_p = _PURPOSE_P_DRIFT if drifted else _PURPOSE_P
    if drifted:
        income = (income * 0.7).round(-2)
        credit = np.clip(credit - 45, 300, 850)
    loan = np.clip(rng.lognormal(9.4, 0.6, rows), 1_000, 60_000).round(-2)
    dti = np.clip(rng.beta(2.2, 6, rows) * 0.9 + loan / income / 5, 0, 1.5).round(3)
    employment = np.clip(rng.exponential(6, rows), 0, 45).round(1)
    accounts = rng.poisson(6, rows)
    home = rng.choice(_HOME, rows, p=[0.42, 0.38, 0.17, 0.03])
    purpose = rng.choice(_PURPOSES, rows, p=purpose_p)
    region = rng.choice(_REGIONS, rows, p=[0.3, 0.25, 0.25, 0.2])
    gender = rng.choice(list(GENDER_SHARES), rows, p=list(GENDER_SHARES.values()))

    # The label depends on the features the same way in both batches.
    z = (
        -1.6
        - 0.018 * (credit - 680)
        - 0.9 * (np.log(income) - 10.9)
        + 2.2 * (dti - 0.3)
        + 0.35 * np.log(loan / 10_000)
        - 0.04 * np.minimum(employment, 15)
        + 0.03 * (accounts - 6)
        + np.where(purpose == "medical", 0.5, 0.0)
        + np.where(home == "RENT", 0.25, 0.0)
        - 0.01 * (age - 41)
        + rng.normal(0, 0.8, rows)
    )
    label = (rng.random(rows) < 1 / (1 + np.exp(-z))).astype(int)

    offset = 1_000_000 if drifted else 0
    ids = np.arange(rows) + offset + seed * 10_000_000
    email = [
        f"{_FIRST[i % len(_FIRST)]}.{i:08d}@{_DOMAINS[i % len(_DOMAINS)]}" for i in ids.tolist()
    ]
    table = pd.DataFrame(
        {
            ID_COLUMN: email,
            "age": age,
            "income": income,
            "loan_amount": loan,
            "credit_score": credit,
            "debt_to_income": dti,
            "employment_years": employment,
            "open_accounts": accounts.astype(float),
            "home_ownership": home,
            "purpose": purpose,
            "region": region,
            "gender": gender,
            TARGET: label,
        }
    )
    # Real tables have holes: income and employment are sometimes not reported.
    for column, share in (("income", 0.04), ("employment_years", 0.07), ("home_ownership", 0.02)):
        mask = rng.random(rows) < share
        table.loc[mask, column] = None
    return table


def write_demo_data(
    directory: Path, *, rows: int = 20_000, production_rows: int = 4_000, seed: int = 7
) -> dict[str, Path]:
    """Write ``train.csv`` (reference) and ``production.csv`` (drifted) into ``directory``.

    Idempotent: files already written for the same parameters are left as they are.
    """
    directory.mkdir(parents=True, exist_ok=True)
    stamp = directory / ".params"
    params = f"rows={rows} production_rows={production_rows} seed={seed}\n"
    paths = {"train": directory / "train.csv", "production": directory / "production.csv"}
    if stamp.exists() and stamp.read_text() == params and all(p.exists() for p in paths.values()):
        return paths
    for name, frame in (
        ("train", make_lending_table(rows, seed)),
        ("production", make_lending_table(production_rows, seed + 1, drifted=True)),
    ):
        tmp = paths[name].with_suffix(".csv.tmp")
        frame.to_csv(tmp, index=False)
        tmp.replace(paths[name])
    stamp.write_text(params)
    return paths


def rows_for_fairness(min_rows: int, holdout_fraction: float) -> int:
    """The fewest training rows (in hundreds) whose holdout is expected to hold two
    gender groups of ``min_rows`` rows with a tenth to spare: fewer, and a fairness gate
    over judged groups has less than two to compare and fails closed."""
    second = sorted(GENDER_SHARES.values())[-2]
    return int(math.ceil(min_rows * 1.1 / (holdout_fraction * second) / 100) * 100)
