"""Questions asked of the lineage store: the chain behind a model version, what is served."""

from __future__ import annotations

from typing import Any

from raymlops.errors import NotFoundError
from raymlops.lineage.store import LineageStore

#: The order in which a run's events tell its story.
CHAIN = ("dataset_ingested", "retrain_data_checked", "data_validated", "features_fitted",
         "model_trained", "gate_verdict", "model_registered", "model_deployed",
         "drift_computed")


def chain_for(store: LineageStore, model_name: str, version: str) -> dict[str, Any]:
    """Dataset -> validation -> features -> training -> gate -> registry -> serving -> drift."""
    run_id = store.run_for_model_version(model_name, version)
    if run_id is None:
        raise NotFoundError(f"no lineage recorded for {model_name} version {version} in "
                            f"{store.url}; was it registered by raymlops with this workdir?")
    events = store.events(run_id=run_id)
    steps = []
    for kind in CHAIN:
        matching = [e for e in events if e.kind == kind]
        if not matching:
            continue
        last = matching[-1]
        steps.append({"kind": kind, "stage": last.stage, "at": last.ts.isoformat(),
                      "dataset_digest": last.dataset_digest, "payload": last.payload})
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
