"""Names that several stages share: internal columns, registry and MLflow tags, capture layout.

No stage owns this module, so stages can agree on a name without importing each other
(only the driver knows the order of the stages).
"""

from __future__ import annotations

from pathlib import Path

#: The encoded label (0/1 for classification, the number for regression), added by validate.
LABEL = "_label"
#: Why a row was quarantined; None for an accepted row.
REASON = "_reject_reason"
#: Which split a row belongs to, while preprocess assigns them.
SPLIT = "_split"
#: A model's score, in evaluation frames.
SCORE = "_score"
#: A model's prediction and the capture time, in captured serving traffic.
PREDICTION = "_prediction"
CAPTURED_AT = "_ts"
REQUEST_ID = "_request_id"

#: MLflow run and registry tags.
RUN_TAG = "raymlops.run_id"
INPUT_DIGEST_TAG = "raymlops.input_digest"
DATASET_DIGEST_TAG = "raymlops.dataset_digest"
GATE_TAG = "raymlops.gate"
GATE_REASONS_TAG = "raymlops.gate_reasons"
THRESHOLD_TAG = "raymlops.threshold"
CONFIG_HASH_TAG = "raymlops.config_hash"
COMMIT_TAG = "mlflow.source.git.commit"
#: what one serving replica of the version asks for (JSON: num_cpus, num_gpus), from the
#: config that trained it: in the separate shape each version's deployment gets its own
RESOURCES_TAG = "raymlops.replica_resources"


def capture_dir(root: Path, model: str, version: str) -> Path:
    """Where the replicas of ``model`` version ``version`` write the rows they scored."""
    return root / model / f"v{version}"
