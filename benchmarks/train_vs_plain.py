"""Training through raymlops (Ray Train) versus the plain library, in one run.

* XGBoost: raymlops' trainer (``XGBoostTrainer`` running ``xgboost_loop``, built by
  ``training.trainer.Plan``) versus plain ``xgboost.train`` on the same feature table,
  with the same parameters and threads (one worker holding both CPUs).
* torch: raymlops' ``TorchTrainer`` running ``torch_loop`` versus a plain torch loop
  over in-memory tensors: the same MLP, optimizer, batch size, epochs and threads.

The fixed start-up cost is measured separately: each contender also runs with one
boosting round (one epoch on a small sample for torch), and ``fixed = raymlops(1) -
plain(1)``; the marginal ratio is ``(raymlops(N) - raymlops(1)) / (plain(N) - plain(1))``.
Data preparation (reading Parquet into the trainer's datasets, building arrays for the
plain loop) is timed on its own and not counted in either fit. Ray's start-up is
reported apart. All times are medians over ``--rounds``.

    python benchmarks/train_vs_plain.py                       # 2M rows, 50 rounds
    python benchmarks/train_vs_plain.py --rows 200000 --rounds 1   # quick look

Writes benchmarks/results/train_vs_plain.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
NUMERIC = ["age", "income", "loan_amount", "credit_score", "debt_to_income", "employment_years",
           "open_accounts"]
CATEGORICAL = ["home_ownership", "purpose", "region", "gender"]


def make_tables(rows: int) -> Any:
    """Raw lending rows -> (raw table with ``_label``, fitted features)."""
    from raymlops.data.demo import make_lending_table
    from raymlops.data.features import fit_frames
    from raymlops.data.rules import LABEL

    table = make_lending_table(rows, seed=0).drop(columns=["email"]).rename(
        columns={"defaulted": LABEL})
    table[LABEL] = table[LABEL].astype(float)
    return table, fit_frames([table], NUMERIC, CATEGORICAL)


def config_for(framework: str, params: dict[str, Any], cpus: int) -> Any:
    from raymlops.config import load_config

    return load_config({
        "data": {"source": "bench", "target": "defaulted", "task": "classification"},
        "train": {"framework": framework, "params": params,
                  "scaling": {"num_workers": 1, "cpus_per_worker": cpus},
                  # one checkpoint, at the end: the plain loop writes none either
                  "checkpoint": {"frequency": 10**6}},
        "deploy": {"name": "bench"}})


def ray_fit(plan: Any, name: str, params: dict[str, Any]) -> dict[str, float]:
    start = time.perf_counter()
    result = plan.trainer(name, params).fit()
    wall = time.perf_counter() - start
    metrics = dict(result.metrics or {})
    return {"seconds": wall, **{k: float(v) for k, v in metrics.items()
                                if k.startswith(("seconds_", "valid_"))}}


# -- XGBoost ------------------------------------------------------------------------------


def plain_xgboost(features: pd.DataFrame, params: dict[str, Any], rounds: int) -> dict[str, Any]:
    from raymlops.training.xgboost_loop import fit_booster

    split = int(len(features) * 0.9)
    start = time.perf_counter()
    _, history = fit_booster(features[:split], features[split:], params, rounds, None)
    return {"seconds": time.perf_counter() - start,
            "valid_logloss": history["valid"]["logloss"][-1]}


def bench_xgboost(args: argparse.Namespace, table: pd.DataFrame, fitted: Any,
                  storage: Path) -> dict[str, Any]:
    import ray.data

    from raymlops.training.trainer import Plan, ToFeatures
    from raymlops.training.xgboost_loop import xgboost_params

    cpus = args.cpus
    config = config_for("xgboost", {"num_boost_round": args.xgb_rounds}, cpus)
    params, _, _ = xgboost_params("classification", {}, seed=42, use_gpu=False, nthread=cpus)
    start = time.perf_counter()
    features = ToFeatures(fitted)(table)
    plain_prep = time.perf_counter() - start
    split = int(len(features) * 0.9)
    start = time.perf_counter()
    plan = Plan(config, fitted, {}, storage)
    plan.datasets = {"train": ray.data.from_pandas(features[:split]).materialize(),
                     "valid": ray.data.from_pandas(features[split:]).materialize()}
    ray_prep = time.perf_counter() - start
    runs: dict[str, list[dict[str, Any]]] = {"plain_n": [], "plain_1": [], "ray_n": [],
                                             "ray_1": []}
    for i in range(args.rounds):
        runs["plain_n"].append(plain_xgboost(features, params, args.xgb_rounds))
        runs["plain_1"].append(plain_xgboost(features, params, 1))
        runs["ray_n"].append(ray_fit(plan, f"xgb-n-{i}", {"num_boost_round": args.xgb_rounds}))
        runs["ray_1"].append(ray_fit(plan, f"xgb-1-{i}", {"num_boost_round": 1}))
        print(f"xgboost round {i + 1}: " + ", ".join(
            f"{k}={v[-1]['seconds']:.2f}s" for k, v in runs.items()), file=sys.stderr)
    return summarize(runs, prep={"plain_seconds": plain_prep, "ray_seconds": ray_prep},
                     rows=len(table), unit_n=args.xgb_rounds, unit="rounds")


# -- torch --------------------------------------------------------------------------------


def plain_torch(arrays: dict[str, np.ndarray], spec: Any, params: dict[str, Any], epochs: int,
                threads: int) -> dict[str, Any]:
    """The plain loop: same model, optimizer, batches and shuffling seed as torch_loop."""
    import torch

    from raymlops.training.torch_model import build_model

    torch.manual_seed(42)
    torch.set_num_threads(threads)
    model = build_model(spec)
    optimizer = torch.optim.AdamW(model.parameters(), lr=params["lr"],
                                  weight_decay=params["weight_decay"])
    loss_fn = torch.nn.BCEWithLogitsLoss()
    numeric, codes, label = (torch.from_numpy(arrays[k]) for k in ("numeric", "codes", "label"))
    n, batch = len(label), int(params["batch_size"])
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.from_numpy(np.random.default_rng(42 + epoch).permutation(n))
        for i in range(0, n, batch):
            idx = order[i:i + batch]
            loss = loss_fn(model(numeric[idx], codes[idx]), label[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return {"seconds": time.perf_counter() - start, "train_loss_last_batch": float(loss)}


def bench_torch(args: argparse.Namespace, table: pd.DataFrame, fitted: Any,
                storage: Path) -> dict[str, Any]:
    import ray.data

    from raymlops.data.rules import LABEL
    from raymlops.training.torch_loop import ToTensors, model_spec, torch_params
    from raymlops.training.trainer import Plan

    table = table.iloc[:args.torch_rows]
    params = torch_params({"epochs": args.torch_epochs, "batch_size": 1024, "patience": 100})
    spec = model_spec("classification", fitted, params)
    start = time.perf_counter()
    tensors = ToTensors(fitted)(table)
    arrays = {"numeric": tensors["numeric"], "codes": tensors["codes"], "label": tensors[LABEL]}
    plain_prep = time.perf_counter() - start
    start = time.perf_counter()
    config = config_for("torch", dict(params), args.cpus)
    plan = Plan(config, fitted, {}, storage)
    dataset = ray.data.from_pandas(table).map_batches(ToTensors(fitted), batch_format="pandas")
    plan.datasets = {"train": dataset.materialize()}  # no valid split: same work as plain
    ray_prep = time.perf_counter() - start
    small = {k: v[: max(1024, len(v) // 100)] for k, v in arrays.items()}
    plan_small = Plan(config, fitted, {}, storage)
    plan_small.datasets = {"train": ray.data.from_pandas(table.iloc[:len(small["label"])])
                           .map_batches(ToTensors(fitted), batch_format="pandas").materialize()}
    runs: dict[str, list[dict[str, Any]]] = {"plain_n": [], "plain_1": [], "ray_n": [],
                                             "ray_1": []}
    one = {**params, "epochs": 1}
    for i in range(args.rounds):
        runs["plain_n"].append(plain_torch(arrays, spec, params, args.torch_epochs, args.cpus))
        runs["plain_1"].append(plain_torch(small, spec, one, 1, args.cpus))
        runs["ray_n"].append(ray_fit(plan, f"torch-n-{i}", params))
        runs["ray_1"].append(ray_fit(plan_small, f"torch-1-{i}", one))
        print(f"torch round {i + 1}: " + ", ".join(
            f"{k}={v[-1]['seconds']:.2f}s" for k, v in runs.items()), file=sys.stderr)
    return summarize(runs, prep={"plain_seconds": plain_prep, "ray_seconds": ray_prep},
                     rows=len(table), unit_n=args.torch_epochs, unit="epochs")


# -- summary ------------------------------------------------------------------------------


def summarize(runs: dict[str, list[dict[str, Any]]], *, prep: dict[str, float], rows: int,
              unit_n: int, unit: str) -> dict[str, Any]:
    med = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
    fixed = med["ray_1"] - med["plain_1"]
    marginal = (med["ray_n"] - med["ray_1"]) / max(med["plain_n"] - med["plain_1"], 1e-9)
    inside = {k: statistics.median(r[k] for r in runs["ray_n"])
              for k in runs["ray_n"][0] if k.startswith("seconds_")}
    return {
        "rows": rows, unit: unit_n,
        "median_seconds": med,
        "ratio_total": med["ray_n"] / med["plain_n"],
        "fixed_cost_seconds": fixed,
        "ratio_marginal": marginal,
        "target_met": med["ray_n"] <= 1.2 * med["plain_n"] + 8.0,
        "ray_n_inside_the_loop": inside,
        "ray_n_outside_the_loop_seconds": med["ray_n"] - sum(inside.values()),
        "data_preparation": prep,
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--xgb-rounds", type=int, default=50)
    parser.add_argument("--torch-rows", type=int, default=500_000)
    parser.add_argument("--torch-epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--only", choices=["xgboost", "torch"])
    parser.add_argument("--ray-train-defaults", action="store_true",
                        help="leave Ray Train's 2 s controller poll as Ray ships it")
    parser.add_argument("--out", default=str(HERE / "results" / "train_vs_plain.json"))
    args = parser.parse_args()

    from raymlops._internal.ray_runtime import apply_ray_defaults, quiet_ray, set_ray_auth_mode

    if not args.ray_train_defaults:
        apply_ray_defaults()  # what raymlops sets before it starts a local Ray
    else:
        set_ray_auth_mode()
    tmp = Path(tempfile.mkdtemp(prefix="raymlops-train-bench-"))
    try:
        table, fitted = make_tables(args.rows)
        start = time.perf_counter()
        import ray

        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING)
        quiet_ray()
        ray.data.DataContext.get_current().enable_progress_bars = False
        logging.getLogger("ray").setLevel(logging.WARNING)
        init_seconds = time.perf_counter() - start
        summary: dict[str, Any] = {
            "cpus": args.cpus, "rounds": args.rounds, "ray_init_seconds": init_seconds,
            "health_check_interval_s": os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S")}
        if args.only in (None, "xgboost"):
            summary["xgboost"] = bench_xgboost(args, table, fitted, tmp / "ray_results")
        if args.only in (None, "torch"):
            summary["torch"] = bench_torch(args, table, fitted, tmp / "ray_results")
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(summary, indent=2, default=str))
        print(json.dumps({k: ({kk: vv for kk, vv in v.items() if kk != "runs"}
                              if isinstance(v, dict) else v) for k, v in summary.items()},
                         indent=2, default=str))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
