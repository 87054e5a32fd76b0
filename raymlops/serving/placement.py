"""Where the live versions run: co-located in one deployment, or one deployment each.

``auto`` co-locates (no extra hop, measured fastest: see the README's serving benchmark)
unless a version needs a GPU (deploy.gpus_per_replica), the versions ask for different
resources, or the versions' artifacts together exceed ``deploy.colocate_max_mb`` (every
replica would hold them all).

What a version's replicas ask for is recorded at registration, from the config that
trained it (the ``raymlops.replica_resources`` tag): in the separate shape each version's
deployment gets its own, so a GPU version runs beside a CPU one. A version registered
without the tag takes the deploy config's.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

from raymlops.config import DeployConfig

log = logging.getLogger(__name__)


def artifact_bytes(uri: str, tracking_uri: str) -> int | None:
    """The size of a model version's artifacts, or None when it cannot be listed."""
    try:
        import mlflow
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        mlflow.set_tracking_uri(tracking_uri)
        repo = get_artifact_repository(uri)
        total = 0
        stack: list[str | None] = [None]
        while stack:
            here = stack.pop()
            for info in repo.list_artifacts(here) or []:
                if info.is_dir:
                    stack.append(info.path)
                else:
                    total += int(info.file_size or 0)
        return total
    except Exception as exc:  # noqa: BLE001 - an unknown size is reported, not fatal
        log.info("placement: could not list the artifacts of %s: %s", uri, exc)
        return None


def version_resources(uri: str, tracking_uri: str) -> dict[str, float] | None:
    """What one replica of a registered version asks for, from its ``RESOURCES_TAG``
    (the config that trained it); None for a version registered without it."""
    import json

    from raymlops.names import RESOURCES_TAG

    match = re.match(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)$", uri)
    if match is None:
        return None
    try:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=tracking_uri)
        tags = client.get_model_version(match["name"], match["version"]).tags or {}
        raw = tags.get(RESOURCES_TAG)
        value = json.loads(raw) if raw else None
    except Exception as exc:  # noqa: BLE001 - unknown: the deploy config's resources apply
        log.info("placement: resources of %s unknown: %s", uri, exc)
        return None
    if not isinstance(value, dict):
        return None
    return {k: float(value[k]) for k in ("num_cpus", "num_gpus") if k in value}


def decide(deploy: DeployConfig, sizes: Mapping[str, int | None],
           resources: Mapping[str, Mapping[str, float] | None] | None = None
           ) -> tuple[str, str]:
    """(placement, reason) for versions with these artifact sizes (bytes) and, where
    known, the resources each version's replicas ask for."""
    if deploy.placement != "auto":
        return deploy.placement, f"deploy.placement is {deploy.placement}"
    asks = {v: dict(r) for v, r in (resources or {}).items() if r}
    if len({tuple(sorted(r.items())) for r in asks.values()}) > 1:
        said = ", ".join(f"{v}: {r}" for v, r in sorted(asks.items()))
        return "separate", (f"the versions ask for different resources ({said}): each "
                            "version gets its own deployment")
    if any(r.get("num_gpus", 0) > 0 for r in asks.values()):
        return "separate", ("a version's replicas ask for a GPU: each version gets its own "
                            "deployment")
    if deploy.gpus_per_replica > 0:
        return "separate", (f"replicas ask for {deploy.gpus_per_replica:g} GPU "
                            "(deploy.gpus_per_replica): each version gets its own deployment")
    known = [s for s in sizes.values() if s is not None]
    total_mb = sum(known) / 2**20
    unknown = len(sizes) - len(known)
    note = f" ({unknown} of unknown size)" if unknown else ""
    if total_mb > deploy.colocate_max_mb:
        return "separate", (f"the live versions' artifacts total {total_mb:.1f} MB{note}, "
                            f"over deploy.colocate_max_mb ({deploy.colocate_max_mb:g}): one "
                            "deployment per version")
    return "colocated", (f"{len(sizes)} live version(s), {total_mb:.1f} MB of artifacts{note},"
                         f" fit one replica (deploy.colocate_max_mb "
                         f"{deploy.colocate_max_mb:g}): co-located, no extra hop")
