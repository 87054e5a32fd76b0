"""Questions asked of the lineage store: the chain behind a model version, what is served."""

from __future__ import annotations

from typing import Any

from raymlops.errors import NotFoundError
from raymlops.lineage.store import LineageEvent, LineageStore

#: The order in which a run's events tell its story.
CHAIN = ("dataset_ingested", "retrain_data_checked", "data_validated", "features_fitted",
         "model_trained", "gate_verdict", "model_registered", "model_deployed",
         "drift_computed")


def chain_for(store: LineageStore, model_name: str, version: str) -> dict[str, Any]:
    """Dataset -> validation -> features -> training -> gate -> registry -> serving -> drift.

    The chain follows the version's own attempt: a run resumed with other parameters
    trains and registers another version, and each version's chain holds the training,
    the gate and the data events that led to it, not the run's latest ones.
    """
    run_id = store.run_for_model_version(model_name, version)
    if run_id is None:
        raise NotFoundError(f"no lineage recorded for {model_name} version {version} in "
                            f"{store.url}; was it registered by raymlops with this workdir?")
    events = store.events(run_id=run_id)
    registered = [e for e in events if e.kind == "model_registered"
                  and e.model_name == model_name and e.model_version == str(version)][-1]
    mlflow_run = registered.payload.get("mlflow_run_id")
    trained = [e for e in events if e.kind == "model_trained" and e.id < registered.id
               and (mlflow_run is None or e.payload.get("mlflow_run_id") == mlflow_run)]
    chosen: dict[str, LineageEvent] = {"model_registered": registered}
    if trained:
        chosen["model_trained"] = trained[-1]
        model_uri = trained[-1].payload.get("model_uri")
        gates = [e for e in events if e.kind == "gate_verdict" and e.id < registered.id
                 and e.payload.get("model_uri", model_uri) == model_uri]
        if gates:
            chosen["gate_verdict"] = gates[-1]
    limit = chosen["model_trained"].id if "model_trained" in chosen else registered.id
    for kind in CHAIN[:4]:
        before = [e for e in events if e.kind == kind and e.id < limit]
        if before:
            chosen[kind] = before[-1]
    for kind in ("model_deployed", "drift_computed"):
        served = [e for e in store.events(kind=kind, model_name=model_name)
                  if e.model_version == str(version)]
        if served:
            chosen[kind] = served[-1]
    steps = [{"kind": kind, "stage": chosen[kind].stage, "at": chosen[kind].ts.isoformat(),
              "dataset_digest": chosen[kind].dataset_digest, "payload": chosen[kind].payload}
             for kind in CHAIN if kind in chosen]
    digest = next((s["dataset_digest"] for s in steps if s["dataset_digest"]), None)
    return {"model": model_name, "version": version, "run_id": run_id,
            "dataset_digest": digest, "steps": steps}


def deployments(store: LineageStore, model_name: str | None = None) -> list[dict[str, Any]]:
    """The latest deployment per model: versions, weights, endpoint and since when."""
    latest: dict[str, Any] = {}
    for event in store.events(kind="model_deployed", model_name=model_name):
        latest[event.model_name or "?"] = event
    return [{"model": name, "version": e.model_version, "weights": e.payload.get("weights"),
             "endpoint": e.payload.get("endpoint"), "since": e.payload.get("since"),
             "run_id": e.run_id} for name, e in sorted(latest.items())]
