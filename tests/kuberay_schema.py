"""KubeRay manifests checked against KubeRay's own v1 CRD schemas, vendored from its
repository with descriptions removed (tests/data/kuberay/, provenance in each file)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import jsonschema

DATA = Path(__file__).resolve().parent / "data" / "kuberay"


def crd_schema(kind: str) -> dict[str, Any]:
    with gzip.open(DATA / f"{kind}.v1.json.gz", "rt") as f:
        return _strict(json.load(f)["schema"])


def _strict(schema: Any) -> Any:
    """The CRD schema, rejecting unknown fields where Kubernetes would prune them
    (``kubectl apply --validate=strict``): a misspelt key fails instead of vanishing."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def check(manifest: dict[str, Any], kind: str) -> None:
    api_version = manifest.get("apiVersion")
    assert api_version == "ray.io/v1", f"{kind}: the vendored CRD schema is ray.io/v1"
    assert manifest.get("kind") == kind
    schema = crd_schema(kind)
    # metadata is Kubernetes' ObjectMeta, which the CRD leaves open
    body = {k: v for k, v in manifest.items() if k != "metadata"}
    jsonschema.Draft7Validator(schema).validate(body)
    assert manifest["metadata"]["name"]
