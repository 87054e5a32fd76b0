"""Preprocessing through raymlops' own stages versus the same work in plain pandas, in one run.

Both contenders turn the same raw Parquet table (8 parts, 2M rows of the demo lending
table without its e-mail column; no id column, so rows are split by a hash of the whole
row, as the product does when the id is dropped) into what training starts from, with
the same functions for the per-row work:

* **raymlops** (Ray Data, ``--cpus`` CPUs), the product's stage functions in order:

  1. ``raymlops.data.validate.validate``: reads the table, applies the row rules
     (``RowChecker``: label encoding, the row normalization of ``RowSpec``, the
     configured ranges) to every row, materializes the checked rows, counts reasons and
     classes, writes ``accepted/`` and ``quarantine/`` Parquet and the validation report;
  2. ``raymlops.data.preprocess.preprocess``: reads ``accepted/``, assigns each row a
     split (``SplitAssigner``), materializes that, writes ``train/``, ``valid/`` and
     ``test/``, then fits the features on ``train/`` in one pass of per-block partial
     statistics (``fit_features``) and writes ``features.json``;
  3. ``raymlops.training.trainer.Plan.load_datasets``, what the train stage runs before
     the first XGBoost worker starts: reads ``train/`` and ``valid/``, maps
     ``ToFeatures`` (impute, scale, one-hot) over them and materializes both.

* **pandas** (one process, the frame in memory), the same work: ``pd.read_parquet`` of
  the table; ``RowChecker`` on the whole frame, reason and class counts, the quarantined
  rows written to Parquet and a JSON report; ``SplitAssigner`` on the accepted rows and
  the three splits written to Parquet (evaluation reads ``test`` later, as in the
  product); ``fit_frames`` (the same partial statistics and exact merge, over one frame)
  on the training split, ``features.json`` written; ``ToFeatures`` on the train and
  valid splits, kept in memory. It writes no ``accepted/`` folder: that is the hand-off
  between two Ray stages, and part of what the product pays for being staged.

The harness checks that both produce the same split sizes and the same fitted features.

Ray is started as the product starts it (``raymlops._internal.ray_runtime.init_ray``:
``apply_ray_defaults()`` before Ray is imported, the dashboard on, driver logging off),
with ``num_cpus`` and, for the streaming runs, ``object_store_memory`` given; its
start-up is timed apart and not counted. A third contender runs the same raymlops stages
on an input several times larger than a small object store (hard links to the input
parts), to show that memory stays bounded while the stages materialize and spill.

Each contender runs in its own process. Peak memory is sampled every 100 ms as the
summed PSS of the contender's whole process tree: Ray's GCS, raylet, dashboard, workers
and the object store they share count, each shared page once; the page cache does not.
Times and peak memory are medians over ``--rounds``.

    python benchmarks/preprocess_vs_pandas.py                # 2M rows, 3 rounds
    python benchmarks/preprocess_vs_pandas.py --rows 200000 --rounds 1 --stream-copies 2

Writes benchmarks/results/preprocess_vs_pandas.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
NUMERIC = ["age", "income", "loan_amount", "credit_score", "debt_to_income", "employment_years",
           "open_accounts"]
CATEGORICAL = ["home_ownership", "purpose", "region", "gender"]
CONFIG = {
    "data": {"source": "bench", "target": "defaulted", "task": "classification",
             "validation": {"ranges": {"age": {"min": 18, "max": 120},
                                       "credit_score": {"min": 300, "max": 850}}},
             "split": {"test_fraction": 0.2, "valid_fraction": 0.1, "seed": 42}},
    "train": {"framework": "xgboost"}, "deploy": {"name": "bench"},
}


def row_spec() -> Any:
    from raymlops.features import RowSpec

    return RowSpec(numeric=list(NUMERIC), categorical=list(CATEGORICAL))


def fitted_summary(fitted: Any) -> dict[str, Any]:
    """What the harness compares between contenders: names, vocabularies, statistics."""
    return {"names": fitted.feature_names, "vocab": fitted.vocab,
            "indicators": fitted.indicators,
            "means": {c: float(f"{v:.9g}") for c, v in fitted.means.items()},
            "scales": {c: float(f"{v:.9g}") for c, v in fitted.scales.items()}}


# -- the contenders (each runs in a child process) ---------------------------------------


def run_pandas(data_dir: Path, out_dir: Path) -> dict[str, Any]:
    from collections import Counter

    import pandas as pd

    from raymlops.config import load_config
    from raymlops.data.preprocess import SplitAssigner
    from raymlops.data.rules import RowChecker
    from raymlops.features import fit_frames
    from raymlops.names import LABEL, REASON, SPLIT
    from raymlops.training.trainer import ToFeatures

    data, spec = load_config(CONFIG).data, row_spec()
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    frame = pd.read_parquet(data_dir)
    # validate: the row rules, reason and class counts, the quarantine written
    checked = RowChecker(data, spec)(frame)
    good = checked[REASON].isna()
    reasons: Counter[str] = Counter()
    for reason in checked.loc[~good, REASON]:
        reasons.update(str(reason).split("; "))
    labels = checked.loc[good, LABEL].value_counts()
    checked[~good].to_parquet(out_dir / "quarantine.parquet", index=False)
    accepted = checked[good].drop(columns=[REASON])
    (out_dir / "validation.json").write_text(json.dumps({
        "rows_in": len(frame), "rows_accepted": len(accepted),
        "reasons": dict(reasons), "labels": {str(k): int(v) for k, v in labels.items()}}))
    validated = time.perf_counter()
    # preprocess: the split, written; the fit on the training split
    assigned = SplitAssigner(data.split, None, exclude=[LABEL])(accepted)
    splits = {}
    for name in ("train", "valid", "test"):
        splits[name] = assigned[assigned[SPLIT] == name].drop(columns=[SPLIT])
        splits[name].to_parquet(out_dir / f"{name}.parquet", index=False)
    fitted = fit_frames([splits["train"]], spec, {})
    fitted.save(out_dir / "features.json")
    preprocessed = time.perf_counter()
    # the transform the train stage runs before training (Plan.load_datasets)
    features = {name: ToFeatures(fitted)(splits[name]) for name in ("train", "valid")}
    end = time.perf_counter()
    return {"seconds": end - start, "seconds_validate": validated - start,
            "seconds_preprocess": preprocessed - validated,
            "seconds_transform": end - preprocessed,
            "rows": float(len(frame)), "rows_accepted": float(len(accepted)),
            "rows_split": {k: len(v) for k, v in splits.items()},
            "rows_out": float(sum(len(f) for f in features.values())),
            "feature_columns": len(features["train"].columns) - 1,
            "fitted": fitted_summary(fitted), "ray_imported": "ray" in sys.modules}


def start_ray(num_cpus: int, object_store: int | None) -> float:
    """Start Ray as ``raymlops._internal.ray_runtime.init_ray`` does (which takes no
    resource settings): the product's defaults set before Ray is imported, the
    dashboard on (Ray Train's placement-group cleaner needs its State API), driver
    logging off. Returns the seconds ``ray.init`` took."""
    from raymlops._internal.ray_runtime import apply_ray_defaults

    apply_ray_defaults()  # RAY_AUTH_MODE (read when Ray is imported), the Train poll
    import ray

    from raymlops._internal.ray_runtime import quiet_ray

    start = time.perf_counter()
    ray.init(num_cpus=num_cpus, object_store_memory=object_store, include_dashboard=True,
             log_to_driver=False, logging_level=logging.WARNING, configure_logging=False)
    seconds = time.perf_counter() - start
    quiet_ray()
    ray.data.DataContext.get_current().enable_progress_bars = False
    return seconds


def object_store_stats() -> dict[str, float]:
    """What the object store spilled to disk and restored, from the raylet (MiB)."""
    try:
        import ray
        from ray._private.internal_api import get_memory_info_reply, get_state_from_address

        stats = get_memory_info_reply(get_state_from_address(
            ray.get_runtime_context().gcs_address)).store_stats
    except Exception as exc:  # a private API; the figure is optional
        print(f"object store stats unavailable: {exc!r}", file=sys.stderr)
        return {}
    return {"spilled_mb": stats.spilled_bytes_total / 2**20,
            "restored_mb": stats.restored_bytes_total / 2**20,
            "fallback_mmap_mb": stats.object_store_bytes_fallback / 2**20}


def run_ray(data_dir: Path, out_dir: Path, *, cpus: int,
            object_store: int | None = None) -> dict[str, Any]:
    init_seconds = start_ray(cpus, object_store)
    import ray

    from raymlops._internal.io import parquet_schema
    from raymlops.config import load_config
    from raymlops.data.preprocess import preprocess
    from raymlops.data.validate import validate
    from raymlops.features import FittedFeatures
    from raymlops.training.trainer import Plan

    config = load_config(CONFIG)
    data, spec = config.data, row_spec()
    start = time.perf_counter()
    checked = validate(data, snapshot=data_dir, schema=parquet_schema(data_dir), spec=spec,
                       excluded={}, run_dir=out_dir)
    validated = time.perf_counter()
    prepared = preprocess(accepted=Path(checked.accepted), split=data.split, id_column=None,
                          spec=spec, clip={}, run_dir=out_dir)
    preprocessed = time.perf_counter()
    fitted = FittedFeatures.load(Path(prepared.features))
    plan = Plan(config, fitted, {}, out_dir / "ray_results").load_datasets(
        Path(prepared.train), Path(prepared.valid))
    end = time.perf_counter()
    train = plan.datasets["train"]
    result = {"seconds": end - start, "seconds_validate": validated - start,
              "seconds_preprocess": preprocessed - validated,
              "seconds_transform": end - preprocessed, "init_seconds": init_seconds,
              "rows": float(checked.rows_in), "rows_accepted": float(checked.rows_accepted),
              "rows_split": dict(prepared.rows),
              "rows_out": float(sum(ds.count() for ds in plan.datasets.values())),
              "feature_columns": len(train.schema().names) - 1,
              "fitted": fitted_summary(fitted), **object_store_stats()}
    ray.shutdown()
    return result


# -- the harness ---------------------------------------------------------------------------


def tree_pss(root: int) -> int:
    """Proportional set size of a process and all its descendants, in bytes.

    PSS splits shared pages (Ray's object store, shared libraries) between the processes
    that map them, so the sum counts them once; the page cache is not counted.
    """
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        children = [c for c, p in parents.items() if p == pid and c not in tree]
        tree.update(children)
        frontier.extend(children)
    total = 0
    for pid in tree:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def measure(args: list[str]) -> dict[str, Any]:
    """Run one contender in a child process, sampling its process tree's PSS every 100 ms."""
    child = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_pss(child.pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        stdout, stderr = child.communicate(timeout=3600)
    finally:
        done.set()
        sampler.join()
    if child.returncode != 0:
        raise RuntimeError(f"contender {args[1]} failed: {stderr[-3000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["peak_mem_mb"] = peak / 2**20
    return result


def make_data(rows: int, directory: Path, parts: int = 8) -> int:
    import numpy as np

    from raymlops.data.demo import make_lending_table

    directory.mkdir(parents=True, exist_ok=True)
    table = make_lending_table(rows, seed=0).drop(columns=["email"])
    for i, chunk in enumerate(np.array_split(np.arange(rows), parts)):
        table.iloc[chunk].to_parquet(directory / f"part-{i:03d}.parquet", index=False)
    return int(table.memory_usage(deep=True).sum())


def same_output(runs: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Where the contenders' outputs differ (split sizes, fitted features); [] if nowhere."""
    first = {name: results[0] for name, results in runs.items()}
    problems = []
    for key in ("rows_accepted", "rows_split", "rows_out", "feature_columns"):
        if first["pandas"][key] != first["ray"][key]:
            problems.append(f"{key}: pandas {first['pandas'][key]}, ray {first['ray'][key]}")
    a, b = first["pandas"]["fitted"], first["ray"]["fitted"]
    for key in ("names", "vocab", "indicators"):
        if a[key] != b[key]:
            problems.append(f"fitted {key} differ")
    for key in ("means", "scales"):
        for column, value in a[key].items():
            if abs(value - b[key][column]) > 1e-6 * max(1.0, abs(value)):
                problems.append(f"fitted {key}[{column}]: pandas {value}, ray {b[key][column]}")
    return problems


PHASES = ("seconds", "seconds_validate", "seconds_preprocess", "seconds_transform")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cpus", type=int, default=2, help="Ray's num_cpus")
    parser.add_argument("--stream-copies", type=int, default=6,
                        help="the largest streaming run reads the input this many times over "
                             "(a run with 2 copies comes first; 0 skips streaming)")
    parser.add_argument("--object-store-mb", type=int, default=256,
                        help="Ray's object store in the streaming runs")
    parser.add_argument("--out", default=str(HERE / "results" / "preprocess_vs_pandas.json"))
    parser.add_argument("--contender", choices=["pandas", "ray", "ray-stream"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.contender:  # child process
        data_dir, work = Path(args.data), Path(args.work)
        if args.contender == "pandas":
            result = run_pandas(data_dir, work)
        elif args.contender == "ray":
            result = run_ray(data_dir, work, cpus=args.cpus)
        else:
            result = run_ray(data_dir, work, cpus=args.cpus,
                             object_store=args.object_store_mb * 2**20)
        print(json.dumps(result))
        return

    tmp = Path(tempfile.mkdtemp(prefix="raymlops-bench-"))
    try:
        in_memory = make_data(args.rows, tmp / "data")
        runs: dict[str, list[dict[str, Any]]] = {"pandas": [], "ray": []}
        for i in range(args.rounds):
            for name in ("pandas", "ray"):
                work = tmp / f"{name}-{i}"
                runs[name].append(measure(["--contender", name, "--data", str(tmp / "data"),
                                           "--work", str(work), "--cpus", str(args.cpus)]))
                shutil.rmtree(work, ignore_errors=True)
                shown = {k: v for k, v in runs[name][-1].items() if k != "fitted"}
                print(f"round {i + 1} {name}: {shown}", file=sys.stderr)
        mismatch = same_output(runs)
        for problem in mismatch:
            print(f"WARNING: the contenders' outputs differ: {problem}", file=sys.stderr)
        streams = {}
        copies_list = sorted({2, args.stream_copies}) if args.stream_copies >= 2 else []
        for copies in copies_list:
            big = tmp / f"big{copies}"  # hard links: copies of the input at no disk cost
            big.mkdir()
            for copy in range(copies):
                for part in sorted((tmp / "data").glob("*.parquet")):
                    os.link(part, big / f"copy{copy}-{part.name}")
            streams[copies] = measure([
                "--contender", "ray-stream", "--data", str(big), "--work",
                str(tmp / f"stream{copies}"), "--cpus", str(args.cpus),
                "--object-store-mb", str(args.object_store_mb)])
            shutil.rmtree(tmp / f"stream{copies}", ignore_errors=True)
            shutil.rmtree(big, ignore_errors=True)
            shown = {k: v for k, v in streams[copies].items() if k != "fitted"}
            print(f"stream x{copies}: {shown}", file=sys.stderr)

        def med(name: str, key: str) -> float:
            return statistics.median(r[key] for r in runs[name])

        def contender(name: str) -> dict[str, Any]:
            out = {f"median_{key}": med(name, key) for key in PHASES}
            out["rows_per_s"] = args.rows / med(name, "seconds")
            out["median_peak_mem_mb"] = med(name, "peak_mem_mb")
            return out

        summary = {
            "rows": args.rows, "rounds": args.rounds, "cpus": args.cpus,
            "machine_cpus": os.cpu_count(), "input_in_memory_mb": in_memory / 2**20,
            "rows_out": runs["ray"][0]["rows_out"], "rows_split": runs["ray"][0]["rows_split"],
            "feature_columns": runs["ray"][0]["feature_columns"],
            "outputs_match": not mismatch, "output_differences": mismatch,
            "pandas": contender("pandas"),
            "raymlops_ray_data": {**contender("ray"),
                                  "median_ray_init_seconds": med("ray", "init_seconds"),
                                  "spilled_mb": max(r.get("spilled_mb", 0.0)
                                                    for r in runs["ray"])},
            "ratio_seconds_ray_over_pandas": med("ray", "seconds") / med("pandas", "seconds"),
            "streaming": [
                {"copies": copies, "input_in_memory_mb": in_memory * copies / 2**20,
                 "object_store_mb": args.object_store_mb, "rows_in": s["rows"],
                 "rows_out": s["rows_out"], **{key: s[key] for key in PHASES},
                 "ray_init_seconds": s["init_seconds"],
                 "rows_per_s": s["rows"] / s["seconds"], "peak_mem_mb": s["peak_mem_mb"],
                 **{k: s[k] for k in ("spilled_mb", "restored_mb", "fallback_mmap_mb")
                    if k in s}}
                for copies, s in streams.items()],
            "runs": {name: [{k: v for k, v in r.items() if k != "fitted"} for r in results]
                     for name, results in runs.items()},
        }
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(summary, indent=2))
        print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
