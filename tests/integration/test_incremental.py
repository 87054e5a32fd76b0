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
