"""Incremental ingestion: a rerun picks up only the files no successful run ingested."""

from __future__ import annotations

import pytest

from raymlops import Pipeline, load_config
from raymlops.data.demo import make_lending_table
from raymlops.lineage.store import LineageStore

pytestmark = pytest.mark.integration


def test_watermark_takes_only_new_files_and_advances_on_success(ray_session, serve_port,
                                                                tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for day in (1, 2):
        make_lending_table(700, seed=day).to_csv(inbox / f"day-{day}.csv", index=False)
    config = load_config({
        "project": "incremental",
        "data": {"source": str(inbox), "target": "defaulted", "task": "classification",
                 "id_column": "email", "pii": {"email": "drop"}, "incremental": True},
        "train": {"framework": "xgboost", "params": {"num_boost_round": 10}},
        "deploy": {"name": "incremental", "port": serve_port},
    })
    workdir = tmp_path / "w"
    first = Pipeline(config, workdir=workdir).run()
    assert first.status == "succeeded"
    store = LineageStore(f"sqlite:///{workdir / 'lineage.db'}")
    assert store.events(run_id=first.run_id, kind="dataset_ingested")[0].payload["rows"] == 1400

    nothing = Pipeline(config, workdir=workdir).run()
    assert nothing.status == "no_new_data"

    make_lending_table(500, seed=3).to_csv(inbox / "day-3.csv", index=False)
    second = Pipeline(config, workdir=workdir)
    summary = second.run()
    assert summary.status == "succeeded" and summary.model_version == "2"
    ingested = store.events(run_id=summary.run_id, kind="dataset_ingested")[0].payload
    assert ingested["rows"] == 500 and "day-3.csv" in ingested["source"]
    from ray import serve

    serve.delete("incremental")


def test_no_new_data_says_so_and_keep_serving_does_not_hang(ray_session, serve_port, tmp_path):
    """It printed a gate verdict and 'endpoint POST None', and hung with --keep-serving."""
    import contextlib
    import io

    from raymlops.cli import main

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    make_lending_table(600, seed=9).to_csv(inbox / "day-1.csv", index=False)
    config = tmp_path / "c.yaml"
    import yaml

    config.write_text(yaml.safe_dump({
        "project": "incremental-cli",
        "data": {"source": str(inbox), "target": "defaulted", "task": "classification",
                 "pii": {"email": "drop"}, "incremental": True},
        "train": {"framework": "xgboost", "params": {"num_boost_round": 5}},
        "deploy": {"name": "incremental-cli", "port": serve_port}}))
    args = ["run", str(config), "--workdir", str(tmp_path / "w")]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(args) == 0
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main([*args, "--keep-serving"]) == 0  # returns: nothing to keep serving
    text = out.getvalue()
    assert "no_new_data" in text and "nothing was trained" in text
    assert "endpoint" not in text and "None" not in text and "gate" not in text
    from ray import serve

    serve.delete("incremental-cli")


def test_rows_appended_while_a_run_reads_are_not_marked_ingested(ray_session, serve_port,
                                                                  tmp_path, monkeypatch):
    """The watermark recorded the source's fingerprint after all stages, so rows appended
    during a run were marked ingested and never read. It records what ingest read."""
    from raymlops.data import ingest as ingest_module

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    day = inbox / "day-1.csv"
    make_lending_table(600, seed=4).to_csv(day, index=False)
    config = load_config({
        "project": "appended",
        "data": {"source": str(inbox), "target": "defaulted", "task": "classification",
                 "pii": {"email": "drop"}, "incremental": True},
        "train": {"framework": "xgboost", "params": {"num_boost_round": 5}},
        "deploy": {"name": "appended", "port": serve_port},
    })
    real = ingest_module.version_dataset

    def append_after_read(*args, **kwargs):  # the writer appends once ingest has read
        result = real(*args, **kwargs)
        make_lending_table(50, seed=5).to_csv(day, mode="a", header=False, index=False)
        return result

    monkeypatch.setattr(ingest_module, "version_dataset", append_after_read)
    first = Pipeline(config, workdir=tmp_path / "w").run()
    monkeypatch.setattr(ingest_module, "version_dataset", real)
    store = LineageStore(f"sqlite:///{tmp_path / 'w' / 'lineage.db'}")
    assert store.events(run_id=first.run_id, kind="dataset_ingested")[0].payload["rows"] == 600
    second = Pipeline(config, workdir=tmp_path / "w").run()
    assert second.status == "succeeded"  # the grown file is new to the watermark
    assert store.events(run_id=second.run_id, kind="dataset_ingested")[0].payload["rows"] == 650
    from ray import serve

    serve.delete("appended")
