"""A second demo table, shaped unlike the lending one: telecom churn, in Parquet files.

It differs on purpose: other column names, a string label ("Yes"/"No"), a numeric
column stored as text with blanks (``total_charges``, as in the public Telco table),
a 0/1 column that is really a category, a phone number (PII, dropped) and a birth
year (PII, generalized to decades). ``write_churn_data`` splits it over several files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

TARGET = "Churn"
ID_COLUMN = "customer_id"

_CONTRACTS = ["Month-to-month", "One year", "Two year"]
_PAYMENT = ["Electronic check", "Mailed check", "Bank transfer", "Credit card"]
_INTERNET = ["DSL", "Fiber optic", "No"]


def make_churn_table(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tenure = rng.integers(0, 73, rows)
    contract = rng.choice(_CONTRACTS, rows, p=[0.55, 0.21, 0.24])
    internet = rng.choice(_INTERNET, rows, p=[0.34, 0.44, 0.22])
    monthly = np.round(np.where(internet == "Fiber optic", 80, np.where(internet == "DSL", 55,
                                                                          22))
                       + rng.normal(0, 12, rows), 2).clip(18, 120)
    total = monthly * tenure + rng.normal(0, 20, rows)
    total_text = np.where(tenure == 0, " ", np.round(total.clip(0), 2).astype(str))
    senior = rng.choice([0, 1], rows, p=[0.84, 0.16])
    z = (-1.2 + 1.3 * (contract == "Month-to-month") - 0.035 * tenure
         + 0.6 * (internet == "Fiber optic") + 0.3 * senior + 0.01 * (monthly - 65)
         + rng.normal(0, 0.7, rows))
    churn = np.where(rng.random(rows) < 1 / (1 + np.exp(-z)), "Yes", "No")
    ids = np.arange(rows) + seed * 1_000_000
    return pd.DataFrame({
        ID_COLUMN: [f"C-{i:07d}" for i in ids],
        "phone": [f"+44 7{(i * 7919) % 10**9:09d}" for i in ids],
        "birth_year": rng.integers(1940, 2005, rows),
        "tenure_months": tenure,
        "monthly_charges": monthly,
        "total_charges": total_text,
        "contract": contract,
        "payment_method": rng.choice(_PAYMENT, rows),
        "internet_service": internet,
        "senior_citizen": senior,
        "partner": rng.choice(["Yes", "No"], rows),
        TARGET: churn,
    })


def write_churn_data(directory: Path, *, rows: int = 6_000, files: int = 3,
                     seed: int = 11) -> Path:
    """Write the table as ``files`` Parquet parts under ``directory`` (idempotent)."""
    directory.mkdir(parents=True, exist_ok=True)
    parts = sorted(directory.glob("part-*.parquet"))
    if len(parts) == files:
        return directory
    table = make_churn_table(rows, seed)
    for i, chunk in enumerate(np.array_split(np.arange(rows), files)):
        table.iloc[chunk].to_parquet(directory / f"part-{i:03d}.parquet", index=False)
    return directory
