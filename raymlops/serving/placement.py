"""Where the live versions run: co-located in one deployment, or one deployment each.

``auto`` co-locates (no extra hop, measured fastest: see the README's serving benchmark)
unless a version needs a GPU (deploy.gpus_per_replica), or the versions' artifacts
together exceed ``deploy.colocate_max_mb`` (every replica would hold them all).
"""

from __future__ import annotations

import logging
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


def decide(deploy: DeployConfig, sizes: Mapping[str, int | None]) -> tuple[str, str]:
    """(placement, reason) for versions with these artifact sizes (bytes)."""
    if deploy.placement != "auto":
        return deploy.placement, f"deploy.placement is {deploy.placement}"
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
