"""A dataset's digest names its content: not its file layout, not its row order."""

from __future__ import annotations

import numpy as np
import pytest

from raymlops.config import load_config
from raymlops.data.demo import make_lending_table
from raymlops.data.ingest import ingest
from raymlops.data.sources import Source

pytestmark = pytest.mark.integration

DATA = load_config({
    "data": {"source": "unused", "target": "defaulted", "task": "classification",
             "id_column": "email", "pii": {"email": "hash"}},
    "train": {"framework": "xgboost"}, "deploy": {"name": "m"}}).data


def test_digest_is_stable_across_file_splits_and_row_order(ray_session, tmp_path):
    table = make_lending_table(3000, seed=4)
    one = tmp_path / "one.csv"
    table.to_csv(one, index=False)
    shuffled = table.sample(frac=1.0, random_state=3)
    parts = []
    for i, chunk in enumerate(np.array_split(np.arange(len(shuffled)), 3)):
        path = tmp_path / f"part-{i}.csv"
        shuffled.iloc[chunk].to_csv(path, index=False)
        parts.append(str(path))
    a = ingest(DATA, source=Source(files=(str(one),)), run_dir=tmp_path / "a", pii_key=b"k")
    b = ingest(DATA, source=Source(files=tuple(parts)), run_dir=tmp_path / "b", pii_key=b"k")
    assert a.rows == b.rows == 3000
    assert a.digest == b.digest
    assert a.profile.keys() == b.profile.keys()
    for column, stats in a.profile.items():
        other = b.profile[column]
        for key, value in stats.items():
            if isinstance(value, float):
                assert other[key] == pytest.approx(value, rel=1e-9), (column, key)
            else:
                assert other[key] == value, (column, key)

    changed = table.copy()
    changed.loc[17, "income"] = 123456.0
    changed_path = tmp_path / "changed.csv"
    changed.to_csv(changed_path, index=False)
    c = ingest(DATA, source=Source(files=(str(changed_path),)), run_dir=tmp_path / "c",
               pii_key=b"k")
    assert c.digest != a.digest
