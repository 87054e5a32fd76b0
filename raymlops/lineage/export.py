"""The history of a model version as a graph (Mermaid, Graphviz dot) or as OpenLineage events.

The graph runs dataset -> run -> version -> gates -> approval -> change -> deployment
-> drift report. The OpenLineage export (``openlineage-python``'s own event classes)
gives one COMPLETE run event per stage that ran, with the dataset as input and output
facets carrying the digest, so Marquez, DataHub or any OpenLineage consumer can ingest it.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

PRODUCER = "https://github.com/raymlops/raymlops"
NAMESPACE = "raymlops"


def _nodes(chain: dict[str, Any], approvals: list[dict[str, Any]],
           changes: list[dict[str, Any]]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(node id, label) pairs and (from, to) edges, in the order of the story."""
    steps = {s["kind"]: s for s in chain["steps"]}
    model, version = chain["model"], chain["version"]
    nodes = [("dataset", f"dataset {str(chain.get('dataset_digest'))[:19]}"),
             ("run", f"run {chain['run_id']}"),
             ("version", f"{model} version {version}")]
    edges = [("dataset", "run"), ("run", "version")]
    last = "version"
    if "gate_verdict" in steps:
        gate = steps["gate_verdict"]["payload"]
        nodes.append(("gates", f"gates: {'PASS' if gate.get('passed') else 'REJECT'}"))
        edges.append((last, "gates"))
        last = "gates"
    for i, approval in enumerate(approvals):
        node = f"approval{i}"
        nodes.append((node, f"approved for {approval['env']} by {approval['approver']}"))
        edges.append((last, node))
    if approvals:
        last = f"approval{len(approvals) - 1}"
    for change in changes:
        node = change["id"].replace("-", "_")
        nodes.append((node, f"{change['id']} {change['kind']} to {change['env']}: "
                            f"{change['state']}"))
        edges.append((last, node))
        last = node
    if "model_deployed" in steps:
        deployed = steps["model_deployed"]["payload"]
        weights = deployed.get("weights") or {}
        shares = ", ".join(f"v{v} {float(w):g}%" for v, w in weights.items()) \
            if isinstance(weights, dict) else str(weights)
        nodes.append(("deployment", f"serving {shares} since "
                                    f"{str(deployed.get('since'))[:19]}"))
        edges.append((last, "deployment"))
        last = "deployment"
    if "drift_computed" in steps:
        drift = steps["drift_computed"]["payload"]
        nodes.append(("drift", f"drift report: {drift.get('verdict')}"))
        edges.append((last, "drift"))
    return nodes, edges


def _clean(label: str) -> str:
    return re.sub(r'["\\[\]{}<>|]', "'", label)


def mermaid(chain: dict[str, Any], approvals: list[dict[str, Any]],
            changes: list[dict[str, Any]]) -> str:
    nodes, edges = _nodes(chain, approvals, changes)
    lines = ["flowchart LR"]
    lines += [f'    {node}["{_clean(label)}"]' for node, label in nodes]
    lines += [f"    {a} --> {b}" for a, b in edges]
    return "\n".join(lines) + "\n"


def dot(chain: dict[str, Any], approvals: list[dict[str, Any]],
        changes: list[dict[str, Any]]) -> str:
    nodes, edges = _nodes(chain, approvals, changes)
    lines = ["digraph lineage {", "    rankdir=LR;", "    node [shape=box];"]
    lines += [f'    {node} [label={json.dumps(label)}];' for node, label in nodes]
    lines += [f"    {a} -> {b};" for a, b in edges]
    return "\n".join(lines) + "\n}\n"


def _utc(at: Any) -> str:
    """An ISO 8601 time with its offset, as OpenLineage's eventTime requires (SQLite
    returns stored UTC times without one)."""
    from datetime import UTC, datetime

    when = at if isinstance(at, datetime) else datetime.fromisoformat(str(at))
    return (when.replace(tzinfo=UTC) if when.tzinfo is None else when).isoformat()


def openlineage_events(chain: dict[str, Any], approvals: list[dict[str, Any]] | None = None,
                       changes: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """One OpenLineage COMPLETE run event per step, as JSON-ready dicts."""
    from openlineage.client.event_v2 import (
        InputDataset,
        Job,
        OutputDataset,
        Run,
        RunEvent,
        RunState,
    )
    from openlineage.client.facet_v2 import dataset_version_dataset, parent_run
    from openlineage.client.serde import Serde

    digest = str(chain.get("dataset_digest"))
    dataset_name = f"{chain['model']}/dataset"
    model_version = f"{chain['model']}/version/{chain['version']}"
    pipeline_run = str(uuid.uuid5(uuid.NAMESPACE_URL, f"raymlops:{chain['run_id']}"))
    parent: dict[str, Any] = {"parent": parent_run.ParentRunFacet(
        run=parent_run.Run(runId=pipeline_run),
        job=parent_run.Job(namespace=NAMESPACE, name=f"{chain['model']}.pipeline"),
        producer=PRODUCER)}
    version_facet: dict[str, Any] = {"version": dataset_version_dataset.DatasetVersionDatasetFacet(
        datasetVersion=digest, producer=PRODUCER)}

    def event(job_name: str, key: str, at: Any, inputs: list[Any],
              outputs: list[Any]) -> dict[str, Any]:
        # one OpenLineage run per stage (or decision), each a child of the pipeline run
        run = Run(runId=str(uuid.uuid5(uuid.NAMESPACE_URL, f"raymlops:{chain['run_id']}:{key}")),
                  facets=parent)
        return json.loads(Serde.to_json(RunEvent(
            eventType=RunState.COMPLETE, eventTime=_utc(at), producer=PRODUCER, run=run,
            job=Job(namespace=NAMESPACE, name=job_name), inputs=inputs, outputs=outputs)))

    events = []
    for step in chain["steps"]:
        inputs = [InputDataset(namespace=NAMESPACE, name=dataset_name, facets=version_facet)]
        outputs = [OutputDataset(namespace=NAMESPACE, name=model_version)] \
            if step["kind"] in ("model_trained", "model_registered") else []
        events.append(event(f"{chain['model']}.{step['stage']}", step["kind"], step["at"],
                            inputs, outputs))
    version_in = [InputDataset(namespace=NAMESPACE, name=model_version)]
    for approval in approvals or []:
        events.append(event(f"{chain['model']}.approve.{approval['env']}",
                            f"approval:{approval['env']}:{approval['approver']}",
                            approval["at"], version_in, []))
    for change in changes or []:
        at = change["history"][-1]["at"] if change.get("history") else None
        events.append(event(f"{chain['model']}.{change['kind']}.{change['env']}", change["id"],
                            at, version_in, [OutputDataset(
                                namespace=NAMESPACE,
                                name=f"{chain['model']}/serving/{change['env']}")]))
    return events
