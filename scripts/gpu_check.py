"""Run raymlops' training-loop functions on a GPU machine that has no Ray installed.

The GPU path (torch on CUDA with mixed precision, XGBoost with ``device=cuda``) lives
in the per-worker loop functions. This script runs those same functions directly:
``xgboost_loop.fit_booster`` with the params ``use_gpu`` produces, and
``torch_loop.train_loop_per_worker`` behind a minimal in-process stand-in for the
four ``ray.train`` calls the loop makes (context, dataset shard, checkpoint, report).
It compares each against the CPU run of the same function and writes JSON.

    python scripts/gpu_check.py --out gpu_check.json

Ray's own parts (worker groups, DDP set-up, GPU scheduling) are not exercised here;
the CPU test suite covers the ``use_gpu`` branch of the scaling config.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _import_without_package_init() -> None:
    """Import raymlops submodules without ``raymlops/__init__`` (it pulls in the driver,
    whose dependencies, such as SQLAlchemy and MLflow, this machine may lack)."""
    package = types.ModuleType("raymlops")
    package.__path__ = [str(ROOT / "raymlops")]
    sys.modules["raymlops"] = package


class FakeTrain:
    """Stand-in for the ``ray.train`` calls of the torch loop, on one in-process worker."""

    def __init__(self, arrays: dict[str, dict[str, np.ndarray]], device: str,
                 checkpoint: str | None = None) -> None:
        import torch

        self.arrays, self.device = arrays, torch.device(device)
        self.checkpoint_path, self.reports, self.saved = checkpoint, [], []
        self.keep = Path(tempfile.mkdtemp(prefix="ckpt-"))

    def install(self) -> None:
        fake = self

        class Checkpoint:
            def __init__(self, path: str) -> None:
                self.path = path

            @classmethod
            def from_directory(cls, directory: str) -> Checkpoint:
                target = fake.keep / f"checkpoint_{len(fake.saved):04d}"
                shutil.copytree(directory, target)
                fake.saved.append(str(target))
                return cls(str(target))

            def as_directory(self) -> Any:
                import contextlib

                return contextlib.nullcontext(self.path)

        class Shard:
            def __init__(self, data: dict[str, np.ndarray]) -> None:
                self.data = data

            def iter_torch_batches(self, *, batch_size: int, device: Any = None,
                                   local_shuffle_seed: int | None = None, **_: Any) -> Any:
                import torch

                n = len(next(iter(self.data.values())))
                order = (np.random.default_rng(local_shuffle_seed).permutation(n)
                         if local_shuffle_seed is not None else np.arange(n))
                for start in range(0, n, batch_size):
                    idx = order[start:start + batch_size]
                    yield {k: torch.as_tensor(v[idx], device=device) for k, v in
                           self.data.items()}

        train = types.ModuleType("ray.train")
        train.Checkpoint = Checkpoint  # type: ignore[attr-defined]
        train.get_context = lambda: types.SimpleNamespace(  # type: ignore[attr-defined]
            get_world_rank=lambda: 0, get_world_size=lambda: 1)
        train.get_checkpoint = lambda: (  # type: ignore[attr-defined]
            Checkpoint(fake.checkpoint_path) if fake.checkpoint_path else None)
        train.get_dataset_shard = lambda name: Shard(fake.arrays[name])  # type: ignore[attr-defined]
        train.report = lambda metrics, checkpoint=None: fake.reports.append(  # type: ignore[attr-defined]
            {**metrics, "checkpoint": checkpoint.path if checkpoint else None})
        torch_mod = types.ModuleType("ray.train.torch")
        torch_mod.get_device = lambda: fake.device  # type: ignore[attr-defined]
        torch_mod.prepare_model = lambda model: model.to(fake.device)  # type: ignore[attr-defined]
        ray = types.ModuleType("ray")
        ray.train = train  # type: ignore[attr-defined]
        train.torch = torch_mod  # type: ignore[attr-defined]
        sys.modules.update({"ray": ray, "ray.train": train, "ray.train.torch": torch_mod})


def torch_check(rows: int, epochs: int, devices: list[str]) -> dict[str, Any]:
    import torch

    from raymlops.data.demo import make_lending_table
    from raymlops.data.features import fit_frames
    from raymlops.data.rules import LABEL
    from raymlops.training import torch_loop

    table = make_lending_table(rows, seed=0).drop(columns=["email"]).rename(
        columns={"defaulted": LABEL})
    numeric = ["age", "income", "loan_amount", "credit_score", "debt_to_income",
               "employment_years", "open_accounts"]
    categorical = ["home_ownership", "purpose", "region", "gender"]
    cut = int(rows * 0.8)
    fitted = fit_frames([table[:cut]], numeric, categorical)
    to_tensors = torch_loop.ToTensors(fitted)
    arrays = {"train": to_tensors(table[:cut]), "valid": to_tensors(table[cut:])}
    params = torch_loop.torch_params({"epochs": epochs, "batch_size": 1024, "patience": 50})
    spec = torch_loop.model_spec("classification", fitted, params)
    config = {"params": params, "spec": spec.__dict__, "seed": 7, "threads": 4,
              "report_every": 1}
    out: dict[str, Any] = {"torch": torch.__version__}
    for device in devices:
        fake = FakeTrain(arrays, device)
        fake.install()
        start = time.perf_counter()
        torch_loop.train_loop_per_worker(config)
        out[device] = {"seconds": round(time.perf_counter() - start, 2),
                       "epochs": len(fake.reports),
                       "valid_auc": [round(r.get("valid_auc", float("nan")), 4)
                                     for r in fake.reports],
                       "valid_loss": [round(r["valid_loss"], 5) for r in fake.reports]}
        if device == "cuda":
            amp, scaler = torch_loop._autocast(torch.device("cuda"), True)
            out["cuda"]["autocast_dtype"] = str(amp)
            out["cuda"]["grad_scaler"] = scaler
            out["cuda"]["gpu"] = torch.cuda.get_device_name(0)
        if device == devices[0]:
            # resume: a new loop started from the checkpoint of epoch 2 goes on at epoch 3
            resume = FakeTrain(arrays, device, checkpoint=fake.saved[1])
            resume.install()
            torch_loop.train_loop_per_worker(config)
            out[device]["resumed_from_epoch"] = resume.reports[0]["resumed_from_epoch"]
            out[device]["resumed_epochs"] = [r["epoch"] for r in resume.reports]
            out[device]["resumed_final_valid_loss"] = round(resume.reports[-1]["valid_loss"], 5)
    return out


def xgboost_check(rows: int, rounds: int, devices: list[str]) -> dict[str, Any]:
    import pandas as pd
    import xgboost
    from sklearn.metrics import roc_auc_score

    from raymlops.data.rules import LABEL
    from raymlops.training.xgboost_loop import fit_booster, xgboost_params

    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 20)).astype(np.float32)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(20)])
    frame[LABEL] = (x[:, 0] + x[:, 1] * x[:, 2] + 0.5 * rng.normal(size=rows) > 0).astype(float)
    cut = int(rows * 0.8)
    out: dict[str, Any] = {"xgboost": xgboost.__version__}
    for use_gpu in [d == "cuda" for d in devices]:
        params, _, _ = xgboost_params("classification", {}, seed=0, use_gpu=use_gpu, nthread=8)
        start = time.perf_counter()
        booster, history = fit_booster(frame[:cut], frame[cut:], params, rounds, None)
        seconds = time.perf_counter() - start
        config = json.loads(booster.save_config())
        scores = booster.inplace_predict(frame[cut:].drop(columns=[LABEL]).to_numpy())
        out["gpu" if use_gpu else "cpu"] = {
            "params_device": params.get("device", "cpu"),
            "booster_device": config["learner"]["generic_param"]["device"],
            "seconds": round(seconds, 2),
            "valid_auc_last_round": round(history["valid"]["auc"][-1], 5),
            "test_auc": round(float(roc_auc_score(frame[cut:][LABEL], scores)), 5)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu_check.json")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--skip-xgboost", action="store_true")
    parser.add_argument("--devices", default="cuda,cpu")
    parser.add_argument("--fp16", action="store_true",
                        help="act as a GPU without bfloat16: float16 autocast + GradScaler")
    args = parser.parse_args()
    _import_without_package_init()
    if args.fp16:
        import torch

        torch.cuda.is_bf16_supported = lambda *a, **k: False  # type: ignore[assignment]
    devices = args.devices.split(",")
    report: dict[str, Any] = {"torch": torch_check(args.rows, args.epochs, devices)}
    if not args.skip_xgboost:
        report["xgboost"] = xgboost_check(args.rows * 5, args.rounds, devices)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
