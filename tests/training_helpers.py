"""Shared by the training integration and chaos tests: configs and one training call."""

from __future__ import annotations

import hashlib
from pathlib import Path

from raymlops.config import load_config
from raymlops.training import tracking
from raymlops.training.train import run_name, train
from raymlops.workspace import Workspace


def train_config(framework: str, task: str = "classification", **train: object):
    return load_config({
        "data": {"source": "unused", "target": "defaulted", "task": task},
        "train": {"framework": framework, "scaling": {"num_workers": 1, "cpus_per_worker": 1},
                  **train},
        "deploy": {"name": f"t-{framework}"},
    })


def config_key(config) -> str:
    """The attempt key the tests pass: the whole config's digest, so a rerun with the
    same config resumes its Ray runs and a changed one starts its own (the driver
    passes the digest of the train stage's inputs instead)."""
    return hashlib.sha256(config.model_dump_json().encode()).hexdigest()


def train_run_name(config, name: str) -> str:
    """The Ray Train run (folder under ``<workdir>/ray_results``) of ``train_on``."""
    return run_name("train", name, config_key(config))


def train_on(prepared, config, name: str, workdir: Path | None = None, *,
             attempt_key: str | None = None):
    ws = Workspace.at(workdir or prepared["root"] / f"ws-{name}").ensure()
    prep = prepared["prep"]
    experiment_id = tracking.setup_experiment(config, ws)
    run_dir = ws.root / "runs" / name
    result = train(config, run_id=name, attempt_key=attempt_key or config_key(config),
                   run_dir=run_dir, storage=ws.root / "ray_results",
                   experiment_id=experiment_id, train_dir=Path(prep.train),
                   valid_dir=Path(prep.valid), features_path=Path(prep.features),
                   dataset={"digest": "sha256:" + "ab" * 32, "rows": 4000, "source": "test",
                            "name": "lending"})
    return result, ws, experiment_id
