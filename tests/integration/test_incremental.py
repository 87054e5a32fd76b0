"""Incremental ingestion: a rerun picks up only the files no successful run ingested."""

from __future__ import annotations

import contextlib
import io
import os

import pytest
import yaml

from raymlops import Pipeline, load_config
from raymlops.cli import main
from raymlops.data.demo import make_lending_table
from raymlops.data.sources import resolve_source
from raymlops.lineage.store import LineageStore

pytestmark = pytest.mark.integration


def test_watermark_takes_only_new_files_and_advances_on_success(ray_session, serve_port,
                                                                tmp_path, monkeypatch):
    """Also: a run with no new data says so (no gate verdict, no 'endpoint POST None') and
    `--keep-serving` returns instead of hanging; and rows appended to a file while ingest
    reads it are not marked ingested (the watermark holds what ingest read, when)."""
    from raymlops.data import ingest as ingest_module

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for day in (1, 2):
        make_lending_table(700, seed=day).to_csv(inbox / f"day-{day}.csv", index=False)
    raw = {
        "project": "incremental",
        "data": {"source": str(inbox), "target": "defaulted", "task": "classification",
                 "id_column": "email", "pii": {"email": "drop"}, "incremental": True},
        "train": {"framework": "xgboost", "params": {"num_boost_round": 10}},
        "deploy": {"name": "incremental", "port": serve_port},
    }
    config = load_config(raw)
    workdir = tmp_path / "w"
    real = ingest_module.version_dataset

    def append_after_read(*args, **kwargs):  # a writer appends once ingest has read
        result = real(*args, **kwargs)
        make_lending_table(50, seed=5).to_csv(inbox / "day-2.csv", mode="a", header=False,
                                              index=False)
        return result

    monkeypatch.setattr(ingest_module, "version_dataset", append_after_read)
    first = Pipeline(config, workdir=workdir).run()
    monkeypatch.setattr(ingest_module, "version_dataset", real)
    assert first.status == "succeeded"
    store = LineageStore(f"sqlite:///{workdir / 'lineage.db'}")
    assert store.events(run_id=first.run_id, kind="dataset_ingested")[0].payload["rows"] == 1400
    grown = Pipeline(config, workdir=workdir)._new_files_only(
        resolve_source(config.data, str))
    assert grown is not None and [p.rsplit("/", 1)[1] for p in grown.files] == ["day-2.csv"]

    # the appended rows are taken back out (content and time as ingested): nothing is new
    [(_, _, mtime)] = [f for f in store.ingested_files(f"incremental:{inbox}")
                       if f[0].endswith("day-2.csv")]
    make_lending_table(700, seed=2).to_csv(inbox / "day-2.csv", index=False)
    os.utime(inbox / "day-2.csv", (mtime, mtime))
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["run", str(path), "--workdir", str(workdir), "--keep-serving"]) == 0
    text = out.getvalue()
    assert "no_new_data" in text and "nothing was trained" in text
    assert "endpoint" not in text and "None" not in text and "gate" not in text

    make_lending_table(500, seed=3).to_csv(inbox / "day-3.csv", index=False)
    summary = Pipeline(config, workdir=workdir).run()
    assert summary.status == "succeeded" and summary.model_version == "2"
    ingested = store.events(run_id=summary.run_id, kind="dataset_ingested")[0].payload
    assert ingested["rows"] == 500 and "day-3.csv" in ingested["source"]
    from ray import serve

    serve.delete("incremental")
