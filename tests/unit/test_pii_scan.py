"""The scanner the PII tests rely on finds what it must (a test that could not fail is no test)."""

from __future__ import annotations

import json
import re

import pandas as pd

from tests.pii_scan import scan_for

YEAR = re.compile(r"^(19|20)\d\d(\.0)?$")


def test_it_finds_values_inside_compressed_parquet_and_text(tmp_path):
    frame = pd.DataFrame({"email": [f"user{i}@corp.example" for i in range(2000)],
                          "x": range(2000)})
    frame.to_parquet(tmp_path / "a.parquet", compression="zstd")
    assert b"user1234@corp.example" not in (tmp_path / "a.parquet").read_bytes()
    (tmp_path / "log.txt").write_text("... got 'user7@corp.example' ...")
    found = scan_for(["user1234@corp.example", "user7@corp.example"], tmp_path)
    assert {h[0].rsplit("/", 1)[1] for h in found.hits} == {"a.parquet", "log.txt"}
    assert found.parquet_files == 1


def test_it_finds_raw_birth_years_by_column_not_by_any_four_digits(tmp_path):
    pd.DataFrame({"birth_year": ["1970-1979"], "ts": [1975]}).to_parquet(tmp_path / "ok.parquet")
    (tmp_path / "ok.json").write_text(json.dumps({"columns": ["birth_year", "n"],
                                                  "data": [["1970-1979", 1975]]}))
    assert scan_for([], tmp_path, columns={"birth_year": YEAR}).hits == []
    pd.DataFrame({"birth_year": [1975.0]}).to_parquet(tmp_path / "bad.parquet")
    (tmp_path / "bad.json").write_text(json.dumps({"columns": ["birth_year"],
                                                   "data": [[1975]]}))
    (tmp_path / "bad.log").write_text('request {"birth_year": 1975, "x": 1}')
    found = scan_for([], tmp_path, columns={"birth_year": YEAR})
    assert {h[0].rsplit("/", 1)[1] for h in found.hits} == {"bad.parquet", "bad.json",
                                                            "bad.log"}


def test_a_generalized_band_next_to_the_column_name_is_not_a_hit(tmp_path):
    (tmp_path / "events.log").write_text('{"birth_year": "1940-1949", "n": 3}')
    assert scan_for([], tmp_path, columns={"birth_year": YEAR}).hits == []


def test_scanning_a_live_sqlite_database_keeps_this_processs_locks_on_it(tmp_path):
    """The scan reads a database's file and its WAL (a row only there is found) and
    leaves this process's locks alone: another process cannot truncate the WAL under a
    read transaction held here. Read in this process, the close drops the locks and the
    truncating checkpoint goes through (busy 0): the corruption a test once saw."""
    import sqlite3
    import subprocess
    import sys

    db = tmp_path / "lineage.db"
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")  # rows stay in the WAL
    writer.execute("CREATE TABLE events (payload TEXT)")
    writer.execute("INSERT INTO events VALUES ('first')")
    reader = sqlite3.connect(db, isolation_level=None)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM events").fetchone() == (1,)
    writer.execute("INSERT INTO events VALUES ('{\"email\": \"ann@corp.example\"}')")

    found = scan_for(["ann@corp.example"], tmp_path)
    assert [h[0].rsplit("/", 1)[1] for h in found.hits] == ["lineage.db-wal"]
    checkpoint = subprocess.run(
        [sys.executable, "-c", "import sqlite3, sys; print(sqlite3.connect(sys.argv[1])"
         ".execute('PRAGMA wal_checkpoint(TRUNCATE)').fetchone()[0])", str(db)],
        capture_output=True, text=True, check=True, timeout=60)
    assert checkpoint.stdout.strip() == "1"  # busy: the reader's lock still holds
    reader.execute("COMMIT")
    reader.close()
    writer.close()
