"""Training through raymlops (Ray Train) versus the plain library, in one run.

The rows are the demo lending table after the product's row rules (``RowChecker``), the
features fitted on them (``fit_frames``); one worker holds all ``--cpus`` CPUs.

* XGBoost: ``Plan.trainer(...).fit()``, the trainer the train stage builds
  (``XGBoostTrainer`` running ``xgboost_loop.train_loop_per_worker``: read the shards
  into pandas, then ``fit_resumable`` -> ``fit_booster``), on datasets that
  ``Plan.load_datasets`` made from a train and a valid Parquet split (90/10). Versus
  ``xgboost_loop.fit_booster`` (``xgboost.train`` with a DMatrix per split) on the same
  rows as in-memory feature frames. Both take the parameters from ``Plan.loop_config``:
  the same params, ``nthread`` and seed, early stopping off, no checkpoint until the end.
* torch: ``Plan.trainer(...).fit()`` for ``TorchTrainer`` running
  ``torch_loop.train_loop_per_worker`` on a train dataset of ``ToTensors`` batches (no
  valid split, so no per-epoch evaluation), versus a plain torch loop over in-memory
  tensors: the same MLP, optimizer, batch size, epochs, seed and threads, also from
  ``Plan.loop_config``.

The fixed start-up cost is measured separately: each contender also runs with one
boosting round (one epoch on a small sample for torch), and ``fixed = raymlops(1) -
plain(1)``; the marginal ratio is ``(raymlops(N) - raymlops(1)) / (plain(N) - plain(1))``.
"Inside the loop" is what the loop's final report measured: ``seconds_data`` (XGBoost:
reading the shards into pandas; torch: the time the epochs waited for batches) and
``seconds_fit`` (XGBoost: DMatrix and boosting; torch: the rest of the epochs); the rest
of the wall time is Ray Train's (workers, placement group, reports, checkpoint,
teardown). Data preparation (``load_datasets`` or the materialized tensor dataset;
building frames or arrays for the plain loop) is timed on its own and not counted in
either fit. Ray is started as the product starts it (``init_ray``: ``apply_ray_defaults``
before Ray is imported, the dashboard on); its start-up is reported apart. All times are
medians over ``--rounds``.

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
    """Lending rows as validate accepts them (normalized, ``_label``), and their features."""
    from raymlops.data.demo import make_lending_table
    from raymlops.data.rules import RowChecker
    from raymlops.features import RowSpec, fit_frames
    from raymlops.names import REASON

    spec = RowSpec(numeric=list(NUMERIC), categorical=list(CATEGORICAL))
    raw = make_lending_table(rows, seed=0).drop(columns=["email"])
    checked = RowChecker(config_for("xgboost", {}, 1).data, spec)(raw)
    table = checked[checked[REASON].isna()].drop(columns=[REASON, "defaulted"])
    table = table.reset_index(drop=True)
    return table, fit_frames([table], spec)


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
    """One ``Plan.trainer(...).fit()``, as the train stage runs it; the final report's
    timings (``seconds_*``) and metrics come with the wall time."""
    start = time.perf_counter()
    result = plan.trainer(name, params).fit()
    wall = time.perf_counter() - start
    metrics = dict(result.metrics or {})
    return {"seconds": wall, **{k: float(v) for k, v in metrics.items()
                                if k.startswith(("seconds_", "valid_", "train_loss"))}}


# -- XGBoost ------------------------------------------------------------------------------


def plain_xgboost(train: pd.DataFrame, valid: pd.DataFrame, params: dict[str, Any],
                  rounds: int) -> dict[str, Any]:
    """``fit_booster`` as the loop calls it, without early stopping or callbacks."""
    from raymlops.training.xgboost_loop import fit_booster

    start = time.perf_counter()
    _, history = fit_booster(train, valid, params, rounds, None)
    return {"seconds": time.perf_counter() - start,
            "valid_logloss": history["valid"]["logloss"][-1]}


def bench_xgboost(args: argparse.Namespace, table: pd.DataFrame, fitted: Any,
                  storage: Path) -> dict[str, Any]:
    from raymlops.training.trainer import Plan, ToFeatures

    config = config_for("xgboost", {"num_boost_round": args.xgb_rounds}, args.cpus)
    plan = Plan(config, fitted, {}, storage)
    loop = plan.loop_config({"num_boost_round": args.xgb_rounds})
    if loop["early_stopping"] is not None or loop["rounds"] != args.xgb_rounds:
        raise RuntimeError(f"the loop would not boost {args.xgb_rounds} rounds: {loop}")
    params = loop["params"]  # what the Ray Train worker gets: params, nthread, seed
    split = int(len(table) * 0.9)
    splits = {"train": storage.parent / "data" / "train",
              "valid": storage.parent / "data" / "valid"}
    for name, rows in (("train", table[:split]), ("valid", table[split:])):
        splits[name].mkdir(parents=True, exist_ok=True)
        rows.to_parquet(splits[name] / "part-000.parquet", index=False)
    start = time.perf_counter()
    train, valid = ToFeatures(fitted)(table[:split]), ToFeatures(fitted)(table[split:])
    plain_prep = time.perf_counter() - start
    start = time.perf_counter()
    plan.load_datasets(splits["train"], splits["valid"])  # what the train stage runs
    ray_prep = time.perf_counter() - start
    runs: dict[str, list[dict[str, Any]]] = {"plain_n": [], "plain_1": [], "ray_n": [],
                                             "ray_1": []}
    for i in range(args.rounds):
        runs["plain_n"].append(plain_xgboost(train, valid, params, args.xgb_rounds))
        runs["plain_1"].append(plain_xgboost(train, valid, params, 1))
        runs["ray_n"].append(ray_fit(plan, f"xgb-n-{i}", {"num_boost_round": args.xgb_rounds}))
        runs["ray_1"].append(ray_fit(plan, f"xgb-1-{i}", {"num_boost_round": 1}))
        print(f"xgboost round {i + 1}: " + ", ".join(
            f"{k}={v[-1]['seconds']:.2f}s" for k, v in runs.items()), file=sys.stderr)
    return summarize(runs, prep={"plain_seconds": plain_prep, "ray_seconds": ray_prep},
                     rows=len(table), unit_n=args.xgb_rounds, unit="rounds",
                     params=dict(params))


# -- torch --------------------------------------------------------------------------------


def plain_torch(arrays: dict[str, np.ndarray], loop: dict[str, Any],
                epochs: int) -> dict[str, Any]:
    """The plain loop: same model, optimizer, batch size, seed and threads as torch_loop
    (from the same ``Plan.loop_config``); it shuffles with a full permutation per epoch."""
    import torch

    from raymlops.training.torch_model import ModelSpec, build_model

    params, spec = loop["params"], ModelSpec(**loop["spec"])
    torch.manual_seed(int(loop["seed"]))
    torch.set_num_threads(int(loop["threads"]))
    model = build_model(spec)
    optimizer = torch.optim.AdamW(model.parameters(), lr=params["lr"],
                                  weight_decay=params["weight_decay"])
    loss_fn = torch.nn.BCEWithLogitsLoss()
    numeric, codes, label = (torch.from_numpy(arrays[k]) for k in ("numeric", "codes", "label"))
    n, batch = len(label), int(params["batch_size"])
    start = time.perf_counter()
    loss_sum = 0.0
    for epoch in range(epochs):
        model.train()
        order = torch.from_numpy(np.random.default_rng(42 + epoch).permutation(n))
        loss_sum = 0.0
        for i in range(0, n, batch):
            idx = order[i:i + batch]
            loss = loss_fn(model(numeric[idx], codes[idx]), label[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.detach().item()) * len(idx)
    return {"seconds": time.perf_counter() - start, "train_loss": loss_sum / max(n, 1)}


def bench_torch(args: argparse.Namespace, table: pd.DataFrame, fitted: Any,
                storage: Path) -> dict[str, Any]:
    import ray.data

    from raymlops.names import LABEL
    from raymlops.training.torch_loop import ToTensors
    from raymlops.training.trainer import Plan

    table = table.iloc[:args.torch_rows]
    params = {"epochs": args.torch_epochs, "batch_size": 1024, "patience": 100}
    config = config_for("torch", dict(params), args.cpus)
    plan = Plan(config, fitted, {}, storage)
    loop = plan.loop_config(params)  # what the Ray Train worker gets
    start = time.perf_counter()
    tensors = ToTensors(fitted)(table)
    arrays = {"numeric": tensors["numeric"], "codes": tensors["codes"], "label": tensors[LABEL]}
    plain_prep = time.perf_counter() - start
    start = time.perf_counter()
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
        runs["plain_n"].append(plain_torch(arrays, loop, args.torch_epochs))
        runs["plain_1"].append(plain_torch(small, loop, 1))
        runs["ray_n"].append(ray_fit(plan, f"torch-n-{i}", params))
        runs["ray_1"].append(ray_fit(plan_small, f"torch-1-{i}", one))
        print(f"torch round {i + 1}: " + ", ".join(
            f"{k}={v[-1]['seconds']:.2f}s" for k, v in runs.items()), file=sys.stderr)
    return summarize(runs, prep={"plain_seconds": plain_prep, "ray_seconds": ray_prep},
                     rows=len(table), unit_n=args.torch_epochs, unit="epochs",
                     params={**loop["params"], "threads": loop["threads"], "seed": loop["seed"]})


# -- summary ------------------------------------------------------------------------------


def summarize(runs: dict[str, list[dict[str, Any]]], *, prep: dict[str, float], rows: int,
              unit_n: int, unit: str, params: dict[str, Any]) -> dict[str, Any]:
    med = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
    fixed = med["ray_1"] - med["plain_1"]
    plain_marginal = med["plain_n"] - med["plain_1"]
    # None when the extra rounds (epochs) cost plain nothing measurable (tiny runs)
    marginal = (med["ray_n"] - med["ray_1"]) / plain_marginal if plain_marginal > 0 else None
    keys = sorted({k for r in runs["ray_n"] for k in r if k.startswith("seconds_")})
    missing = [k for k in ("seconds_data", "seconds_fit") if k not in keys]
    if missing:
        raise RuntimeError(f"the loop's final report has no {missing}: got {keys}")
    inside = {k: statistics.median(r[k] for r in runs["ray_n"]) for k in keys}
    return {
        "rows": rows, unit: unit_n, "params": params,
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

        # as init_ray starts it (which takes no num_cpus): dashboard on, driver logs off
        ray.init(num_cpus=args.cpus, include_dashboard=True, log_to_driver=False,
                 logging_level=logging.WARNING, configure_logging=False)
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
