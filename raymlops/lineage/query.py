"""Questions asked of the lineage store: the chain behind a model version, what is served."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from raymlops.errors import NotFoundError
from raymlops.lineage.store import LineageEvent, LineageStore

#: The order in which a run's events tell its story.
CHAIN = ("dataset_ingested", "retrain_data_checked", "data_validated", "features_fitted",
         "model_trained", "model_registered", "gate_verdict", "model_deployed",
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
        # the verdict on this version (recorded after its registration), or, for a version
        # registered before gates ran after registration, the one on its model
        gates = [e for e in events if e.kind == "gate_verdict" and (
            e.model_version == str(version) if e.model_version is not None
            else e.payload.get("model_uri", model_uri) == model_uri)]
        if gates:
            chosen["gate_verdict"] = gates[-1]
    limit = chosen["model_trained"].id if "model_trained" in chosen else registered.id
    for kind in CHAIN[:4]:
        before = [e for e in events if e.kind == kind and e.id < limit]
        if before:
            chosen[kind] = before[-1]
    for kind in ("model_deployed", "drift_computed"):
        served = store.events(kind=kind, model_name=model_name, model_version=str(version),
                              newest_first=True, limit=1)
        if served:
            chosen[kind] = served[0]
    steps = [{"kind": kind, "stage": chosen[kind].stage, "at": chosen[kind].ts.isoformat(),
              "dataset_digest": chosen[kind].dataset_digest, "payload": chosen[kind].payload}
             for kind in CHAIN if kind in chosen]
    digest = next((s["dataset_digest"] for s in steps if s["dataset_digest"]), None)
    return {"model": model_name, "version": version, "run_id": run_id,
            "dataset_digest": digest, "steps": steps}


def deployments(store: LineageStore, model_name: str | None = None) -> list[dict[str, Any]]:
    """The latest deployment per model and environment: versions, weights, since when."""
    latest: dict[tuple[str, str], Any] = {}
    for event in store.events(kind="model_deployed", model_name=model_name):
        latest[(event.model_name or "?", str(event.payload.get("env") or ""))] = event
    return [{"model": name, "env": env or None, "version": e.model_version,
             "weights": e.payload.get("weights"), "endpoint": e.payload.get("endpoint"),
             "since": e.payload.get("since"), "run_id": e.run_id,
             "change": e.payload.get("change")}
            for (name, env), e in sorted(latest.items())]


def _latest(store: LineageStore, kind: str, model_name: str, at: datetime,
            env: str | None) -> Any:
    """The newest ``kind`` event of the model in ``env`` at or before ``at``. Environments
    interleave, so newest-first batches grow until one is found or history ends."""
    limit = 50
    while True:
        events = store.events(kind=kind, model_name=model_name, before=at, newest_first=True,
                              limit=limit)
        found = next((e for e in events if env is None or e.payload.get("env") == env), None)
        if found is not None or len(events) < limit:
            return found
        limit *= 4


def _approvers(approvals: Any, model_name: str, version: str, *, env: str | None,
               change: str | None, at: datetime) -> list[str]:
    """Who approved what served: the change record that put it there names them; a
    deployment without one falls back to the approvals given before ``at``."""
    recorded = approvals.find_change(change) if change else None
    if recorded is not None:
        return list(recorded.approvers)
    if env is None:
        return []
    return sorted({a["approver"] for a in approvals.approvals(model_name, version, env)
                   if datetime.fromisoformat(a["at"]).replace(tzinfo=None)
                   <= at.replace(tzinfo=None)})


def _version_facts(store: LineageStore, approvals: Any, model_name: str, version: str, *,
                   env: str | None, change: str | None, at: datetime) -> dict[str, Any]:
    registered = store.events(kind="model_registered", model_name=model_name,
                              model_version=version, newest_first=True, limit=1)
    verdicts = store.events(kind="gate_verdict", model_name=model_name,
                            model_version=version, newest_first=True, limit=20)
    # the verdict of the gates of the environment it serves in, else the newest
    verdict = [v for v in verdicts if v.payload.get("env") == env][:1] or verdicts[:1]
    return {
        "dataset_digest": registered[0].dataset_digest if registered else None,
        "commit": registered[0].payload.get("commit") if registered else None,
        "config_hash": registered[0].payload.get("config_hash") if registered else None,
        "author": registered[0].payload.get("author") if registered else None,
        "run_id": registered[0].run_id if registered else None,
        "gate": ({"passed": verdict[0].payload.get("passed"),
                  "reasons": verdict[0].payload.get("reasons"),
                  "env": verdict[0].payload.get("env")} if verdict else None),
        "approvers": _approvers(approvals, model_name, version, env=env, change=change, at=at),
    }


def serving_at(store: LineageStore, approvals: Any, model_name: str, at: datetime,
               env: str | None = None) -> dict[str, Any]:
    """What served ``model_name`` at the instant ``at``, per environment (only ``env``
    when given): the versions and traffic shares, the change that set them, and for each
    version its dataset digest, commit, config hash, author, gate verdict and approvers.
    An environment whose serving had stopped by then says so, with no versions."""
    if at.tzinfo is not None:  # stored times are UTC; SQLite keeps no offset
        at = at.astimezone(UTC)
    names: list[str | None] = [env] if env is not None else [
        *approvals.environments(model_name)]
    answers = _serving_in(store, approvals, model_name, at, names)
    if not answers and env is None:  # deployments from before environments were recorded
        answers = _serving_in(store, approvals, model_name, at, [None])
    if not answers:
        raise NotFoundError(f"nothing of {model_name}{f' in {env}' if env else ''} was serving "
                            f"at {at.isoformat()} according to {store.url}")
    return {"model": model_name, "at": at.isoformat(), "environments": answers}


def _serving_in(store: LineageStore, approvals: Any, model_name: str, at: datetime,
                names: list[str | None]) -> list[dict[str, Any]]:
    answers: list[dict[str, Any]] = []
    for name in names:
        found = _latest(store, "model_deployed", model_name, at, name)
        if found is None:
            continue
        stopped = _latest(store, "serving_stopped", model_name, at, name)
        if stopped is not None and stopped.ts >= found.ts:
            answers.append({"env": name, "since": stopped.ts.isoformat(), "serving": False,
                            "app": stopped.payload.get("app"), "change": None,
                            "reason": stopped.payload.get("reason"), "versions": []})
            continue
        deployed_env = found.payload.get("env")
        weights = sorted((found.payload.get("weights") or {}).items())
        answers.append({
            "env": deployed_env, "since": found.ts.isoformat(), "serving": True,
            "app": found.payload.get("app"), "change": found.payload.get("change"),
            "reason": found.payload.get("reason"),
            "versions": [{"version": version, "share": share,
                          **_version_facts(store, approvals, model_name, version,
                                           env=deployed_env, change=found.payload.get("change"),
                                           at=at)}
                         for version, share in weights],
        })
    return answers
