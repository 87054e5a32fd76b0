"""The auditor's queries over a long history: ``serving-at`` and ``lineage`` on 1,000,000 events.

A lineage store is filled with 1,000,000 events shaped like real runs (ingest, validate,
features, train, register, gate, deploy and three drift reports per run, over 20
models), on SQLite (the embedded default) and on PostgreSQL (the team setup), side by
side. Then ``serving_at`` (which versions served a model at an instant, with their data,
commit, gate and approvers) and ``chain_for`` (the chain behind a version) are timed at
random instants and versions. The target: under 50 ms each, median of 20. Deployments
alternate between staging and production, and ``serving_at`` is timed for one
environment and for all of them. These are the query functions the CLI calls; the CLI
itself adds its start-up (imports) to each command.

    python benchmarks/lineage_queries.py                 # 1M events, 20 queries each
    python benchmarks/lineage_queries.py --events 50000 --queries 5   # a quick look

Writes benchmarks/results/lineage_queries.json. PostgreSQL must be at
RAYMLOPS_TEST_POSTGRES_URL (default 127.0.0.1:5432/test); a fresh schema is used and
dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
POSTGRES_URL = os.environ.get("RAYMLOPS_TEST_POSTGRES_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/test")
KINDS = ("dataset_ingested", "data_validated", "features_fitted", "model_trained",
         "model_registered", "gate_verdict", "model_deployed", "drift_computed",
         "drift_computed", "drift_computed")
MODELS = 20


def fill(url: str, events: int) -> dict[str, object]:
    from sqlalchemy import insert

    from raymlops.lineage.governance import GovernanceStore
    from raymlops.lineage.store import EventRow, LineageStore

    store = LineageStore(url)
    gov = GovernanceStore(url)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    runs = events // len(KINDS)
    rows, versions = [], dict.fromkeys(range(MODELS), 0)
    began = time.perf_counter()
    for run in range(runs):
        model = run % MODELS
        versions[model] += 1
        version = str(versions[model])
        name = f"model-{model}"
        run_id = f"run-{run:07d}"
        t0 = start + timedelta(minutes=run)
        for k, kind in enumerate(KINDS):
            keyed = kind in ("model_registered", "gate_verdict", "model_deployed",
                             "drift_computed")
            payload: dict[str, object] = {"reason": f"{kind} of run {run}"}
            if kind == "model_trained":
                payload["mlflow_run_id"] = f"mlflow-{run}"
                payload["model_uri"] = f"models:/m-{run}"
            if kind == "model_registered":
                payload.update({"mlflow_run_id": f"mlflow-{run}", "commit": "abc123"})
            if kind == "gate_verdict":
                payload.update({"passed": True, "reasons": ["roc_auc=0.8 meets 0.7"],
                                "model_uri": f"models:/m-{run}"})
            if kind == "model_deployed":
                # staging and production interleave: a model's odd versions deploy to
                # staging, its even ones to production
                payload.update({"weights": {version: 100.0},
                                "env": "production" if int(version) % 2 == 0 else "staging",
                                "since": (t0 + timedelta(seconds=k)).isoformat()})
            rows.append({"ts": t0 + timedelta(seconds=k), "run_id": run_id, "stage": kind,
                         "kind": kind, "model_name": name if keyed else None,
                         "model_version": version if keyed else None,
                         "dataset_digest": f"sha256:{run:064x}", "payload": payload,
                         "input_digest": f"{run:064x}"})
        if len(rows) >= 20_000:
            with store.engine.begin() as conn:
                conn.execute(insert(EventRow), rows)
            rows = []
        if run % (runs // 20 or 1) == 0 and run:
            gov.approve(name, version, "production", "bob", "benchmark")
    if rows:
        with store.engine.begin() as conn:
            conn.execute(insert(EventRow), rows)
    for model in range(MODELS):  # the environments a model went to, as change records say
        for env in ("staging", "production"):
            change = gov.open_change(model=f"model-{model}", version="1", env=env,
                                     kind="promotion", from_version=None, requester="bench",
                                     approvers=[], verdict={}, rollback_to=None,
                                     reason="benchmark")
            gov.advance(change.id, "implemented", actor="bench", reason="benchmark")
    return {"store": store, "gov": gov, "runs": runs, "versions": versions,
            "seconds_fill": time.perf_counter() - began, "start": start}


def measure(filled: dict[str, object], queries: int, seed: int = 0) -> dict[str, object]:
    from raymlops.lineage.query import chain_for, serving_at

    rng = random.Random(seed)
    store, gov = filled["store"], filled["gov"]
    runs, start = int(filled["runs"]), filled["start"]  # type: ignore[arg-type]
    versions: dict[int, int] = filled["versions"]  # type: ignore[assignment]
    timings: dict[str, list[float]] = {"serving_at": [], "serving_at_all_envs": [],
                                       "lineage": []}
    serving_at(store, gov, "model-0", start + timedelta(minutes=runs))  # warm the caches
    for _ in range(queries):
        model = rng.randrange(MODELS)
        at = start + timedelta(minutes=rng.randrange(MODELS, runs), seconds=30)
        began = time.perf_counter()
        answer = serving_at(store, gov, f"model-{model}", at, "production")
        timings["serving_at"].append((time.perf_counter() - began) * 1000)
        assert answer["environments"][0]["versions"], answer
        began = time.perf_counter()
        every = serving_at(store, gov, f"model-{model}", at)
        timings["serving_at_all_envs"].append((time.perf_counter() - began) * 1000)
        assert {e["env"] for e in every["environments"]} == {"staging", "production"}, every
        version = str(rng.randrange(1, versions[model] + 1))
        began = time.perf_counter()
        chain = chain_for(store, f"model-{model}", version)
        timings["lineage"].append((time.perf_counter() - began) * 1000)
        assert len(chain["steps"]) >= 6, chain
    return {name: {"median_ms": statistics.median(values), "p90_ms": sorted(values)[
        int(0.9 * (len(values) - 1))], "max_ms": max(values), "runs": values,
        "target_met": statistics.median(values) < 50.0} for name, values in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--out", default=str(HERE / "results" / "lineage_queries.json"))
    args = parser.parse_args()

    from sqlalchemy import create_engine, text

    results: dict[str, object] = {"events": args.events, "queries": args.queries,
                                  "cpus": os.cpu_count(), "models": MODELS}
    with tempfile.TemporaryDirectory() as tmp:
        filled = fill(f"sqlite:///{Path(tmp) / 'lineage.db'}", args.events)
        results["sqlite"] = {"seconds_fill": filled["seconds_fill"],
                             **measure(filled, args.queries)}
        print("sqlite", {k: v["median_ms"] for k, v in results["sqlite"].items()  # type: ignore[union-attr]
                         if isinstance(v, dict)})
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        filled = fill(f"{POSTGRES_URL}?options=-csearch_path%3D{schema}", args.events)
        with filled["store"].engine.begin() as conn:  # type: ignore[attr-defined]
            conn.execute(text("ANALYZE"))
        results["postgresql"] = {"seconds_fill": filled["seconds_fill"],
                                 **measure(filled, args.queries)}
        print("postgresql", {k: v["median_ms"] for k, v in results["postgresql"].items()  # type: ignore[union-attr]
                             if isinstance(v, dict)})
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
