from __future__ import annotations

import contextlib
import io
import json

from raymlops.cli import main
from raymlops.data.demo import make_lending_table


def test_drift_command_writes_json_and_html(tmp_path):
    make_lending_table(3000, seed=1).to_csv(tmp_path / "ref.csv", index=False)
    make_lending_table(800, seed=2, drifted=True).to_parquet(tmp_path / "cur.parquet")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["drift", "--reference", str(tmp_path / "ref.csv"), "--current",
                     str(tmp_path / "cur.parquet"), "--out", str(tmp_path / "r"), "--json"])
    assert code == 0
    report = json.loads(out.getvalue())
    assert {"income", "credit_score", "purpose"} <= set(report["drifted_columns"])
    assert "age" not in report["drifted_columns"]
    assert "email" not in report["columns"]  # unique per row: an identifier, not a feature
    assert (tmp_path / "r" / "drift.html").exists()


def test_drift_command_on_a_missing_file_is_a_one_line_data_error(tmp_path, capsys):
    code = main(["drift", "--reference", str(tmp_path / "nope.csv"), "--current",
                 str(tmp_path / "nope.csv")])
    assert code == 3
    assert "--reference" in capsys.readouterr().err
