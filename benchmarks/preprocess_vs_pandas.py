"""Preprocessing on Ray Data versus the same transformations in plain pandas, in one run.

Both contenders run the same code on the same 2M-row Parquet table: the row rules
(``RowChecker``: label encoding, number parsing, ranges, category cleanup), a one-pass
fit (means, scales, category vocabularies) and the transform (impute, scale, one-hot),
and write the features as Parquet. pandas does it on one in-memory frame; raymlops
does it with ``map_batches`` over a Ray Dataset (2 CPUs). A third run streams an input
several times larger than Ray's object store through the transform, to show memory
stays bounded.

Each contender runs in its own process. Peak memory is sampled every 100 ms as the
summed PSS of the contender's whole process tree: Ray's raylet, workers and the object
store they share count, each shared page once; the page cache does not. Rows/s and
peak memory are medians over ``--rounds``.

    python benchmarks/preprocess_vs_pandas.py                # 2M rows, 3 rounds
    python benchmarks/preprocess_vs_pandas.py --rows 200000 --rounds 1   # quick look

Writes benchmarks/results/preprocess_vs_pandas.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NUMERIC = ["age", "income", "loan_amount", "credit_score", "debt_to_income", "employment_years",
           "open_accounts"]
CATEGORICAL = ["home_ownership", "purpose", "region", "gender"]
CONFIG = {
    "data": {"source": "bench", "target": "defaulted", "task": "classification",
             "validation": {"ranges": {"age": {"min": 18, "max": 120},
                                       "credit_score": {"min": 300, "max": 850}}}},
    "train": {"framework": "xgboost"}, "deploy": {"name": "bench"},
}


# -- the contenders (each runs in a child process) ---------------------------------------


def run_pandas(data_dir: Path, out_dir: Path) -> dict[str, float]:
    import pandas as pd

    from raymlops.config import load_config
    from raymlops.data.features import fit_frames
    from raymlops.data.rules import REASON, RowChecker

    data = load_config(CONFIG).data
    start = time.perf_counter()
    frame = pd.read_parquet(data_dir)
    checked = RowChecker(data, NUMERIC, CATEGORICAL)(frame)
    accepted = checked[checked[REASON].isna()]
    fitted = fit_frames([accepted], NUMERIC, CATEGORICAL)
    features = fitted.transform_frame(accepted)
    out_dir.mkdir(parents=True, exist_ok=True)
    features.to_parquet(out_dir / "features.parquet", index=False)
    return {"seconds": time.perf_counter() - start, "rows": float(len(frame))}


def run_ray(data_dir: Path, out_dir: Path, object_store: int | None = None,
            big_dir: Path | None = None) -> dict[str, float]:
    import logging

    os.environ.setdefault("RAY_AUTH_MODE", "token")  # Ray reads it at import
    import ray

    init_start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING, object_store_memory=object_store)
    ray.data.DataContext.get_current().enable_progress_bars = False
    init_seconds = time.perf_counter() - init_start

    from raymlops._internal.io import read_parquet
    from raymlops.config import load_config
    from raymlops.data.features import fit_features
    from raymlops.data.rules import REASON, RowChecker

    data = load_config(CONFIG).data
    files = sorted(str(p) for p in data_dir.glob("*.parquet"))
    start = time.perf_counter()
    checker = RowChecker(data, NUMERIC, CATEGORICAL)

    def accepted(batch):  # type: ignore[no-untyped-def]
        return batch[batch[REASON].isna()].drop(columns=[REASON])

    source = read_parquet(files).map_batches(checker, batch_format="pandas")
    clean = source.map_batches(accepted, batch_format="pandas")
    fitted = fit_features(clean, NUMERIC, CATEGORICAL)
    fit_seconds = time.perf_counter() - start
    if big_dir is not None:  # the streaming run: the input several times over
        big = read_parquet(str(big_dir)).map_batches(checker, batch_format="pandas")
        clean = big.map_batches(accepted, batch_format="pandas")

    def transform(batch):  # type: ignore[no-untyped-def]
        return fitted.transform_frame(batch)

    clean.map_batches(transform, batch_format="pandas").write_parquet(str(out_dir))
    seconds = time.perf_counter() - start
    rows = sum(__import__("pyarrow.parquet").parquet.ParquetFile(p).metadata.num_rows
               for p in Path(out_dir).glob("*.parquet"))
    ray.shutdown()
    return {"seconds": seconds, "fit_seconds": fit_seconds, "init_seconds": init_seconds,
            "rows": float(rows)}


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


def measure(args: list[str]) -> dict[str, float]:
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
        stdout, stderr = child.communicate(timeout=1800)
    finally:
        done.set()
        sampler.join()
    if child.returncode != 0:
        raise RuntimeError(f"contender {args[1]} failed: {stderr[-2000:]}")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stream-copies", type=int, default=6,
                        help="the streaming run reads the input this many times over")
    parser.add_argument("--object-store-mb", type=int, default=256)
    parser.add_argument("--out", default=str(HERE / "results" / "preprocess_vs_pandas.json"))
    parser.add_argument("--contender", choices=["pandas", "ray", "ray-stream"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--big", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.contender:  # child process
        data_dir, work = Path(args.data), Path(args.work)
        if args.contender == "pandas":
            result = run_pandas(data_dir, work)
        elif args.contender == "ray":
            result = run_ray(data_dir, work)
        else:
            result = run_ray(data_dir, work, object_store=args.object_store_mb * 2**20,
                             big_dir=Path(args.big))
        print(json.dumps(result))
        return

    tmp = Path(tempfile.mkdtemp(prefix="raymlops-bench-"))
    try:
        in_memory = make_data(args.rows, tmp / "data")
        runs: dict[str, list[dict[str, float]]] = {"pandas": [], "ray": []}
        for i in range(args.rounds):
            for name in ("pandas", "ray"):
                work = tmp / f"{name}-{i}"
                runs[name].append(measure(["--contender", name, "--data", str(tmp / "data"),
                                           "--work", str(work)]))
                shutil.rmtree(work, ignore_errors=True)
                print(f"round {i + 1} {name}: {runs[name][-1]}", file=sys.stderr)
        streams = {}
        for copies in sorted({2, args.stream_copies}):
            big = tmp / f"big{copies}"  # hard links: copies of the input at no disk cost
            big.mkdir()
            for copy in range(copies):
                for part in sorted((tmp / "data").glob("*.parquet")):
                    os.link(part, big / f"copy{copy}-{part.name}")
            streams[copies] = measure([
                "--contender", "ray-stream", "--data", str(tmp / "data"), "--work",
                str(tmp / f"stream{copies}"), "--big", str(big),
                "--object-store-mb", str(args.object_store_mb)])
            shutil.rmtree(tmp / f"stream{copies}", ignore_errors=True)
            print(f"stream x{copies}: {streams[copies]}", file=sys.stderr)

        def med(name: str, key: str) -> float:
            return statistics.median(r[key] for r in runs[name])

        summary = {
            "rows": args.rows, "rounds": args.rounds, "cpus": os.cpu_count(),
            "input_in_memory_mb": in_memory / 2**20,
            "pandas": {"median_seconds": med("pandas", "seconds"),
                       "rows_per_s": args.rows / med("pandas", "seconds"),
                       "median_peak_mem_mb": med("pandas", "peak_mem_mb")},
            "raymlops_ray_data": {"median_seconds": med("ray", "seconds"),
                                  "median_fit_seconds": med("ray", "fit_seconds"),
                                  "median_ray_init_seconds": med("ray", "init_seconds"),
                                  "rows_per_s": args.rows / med("ray", "seconds"),
                                  "median_peak_mem_mb": med("ray", "peak_mem_mb")},
            "ratio_seconds_ray_over_pandas": med("ray", "seconds") / med("pandas", "seconds"),
            "streaming": [
                {"copies": copies, "input_in_memory_mb": in_memory * copies / 2**20,
                 "object_store_mb": args.object_store_mb, "rows_out": s["rows"],
                 "seconds": s["seconds"], "rows_per_s": s["rows"] / s["seconds"],
                 "peak_mem_mb": s["peak_mem_mb"]}
                for copies, s in streams.items()],
            "runs": runs,
        }
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(summary, indent=2))
        print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
