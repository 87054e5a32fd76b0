"""The declared stage list: what each stage reads, runs, returns and records.

Only this module knows the order. Each ``Stage`` names the config sections and the
upstream stages it reads (its input digest covers both), the function that runs it,
the typed output, and the lineage events it emits *when it runs*: a resumed run that
reuses a stage emits nothing for it. Guards (``before``) stop the run between stages,
as a rejected gate does before ``register``; ``still_valid`` lets a stage whose effect
lives outside our store (serving) be reused only while that effect is still there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from raymlops.config import PipelineConfig
from raymlops.data.ingest import IngestResult
from raymlops.data.preprocess import PreprocessResult
from raymlops.data.sources import Source
from raymlops.data.validate import ValidationResult
from raymlops.evaluation.evaluate import EvaluationResult
from raymlops.lineage.store import Event
from raymlops.monitoring.monitor import MonitorResult
from raymlops.registry.mlflow_registry import Registration
from raymlops.serving.deploy import DeployResult
from raymlops.training.train import TrainResult
from raymlops.workspace import Workspace

log = logging.getLogger("raymlops.pipeline")


@dataclass(frozen=True)
class RecordedData:
    """The already-protected snapshot a registered version was trained on (retrain)."""

    snapshot: Path
    digest: str
    origin: str  # "MODEL/VERSION", for the lineage event


@dataclass
class Context:
    """What the stages of one run share: the config, where things go, what ran so far."""

    config: PipelineConfig
    workspace: Workspace
    run_id: str
    run_dir: Path
    source: Source
    recorded: RecordedData | None
    pii_key: bytes
    key_ref: dict[str, str]
    results: dict[str, Any] = field(default_factory=dict)
    #: each stage's input digest, which the stages below it chain into theirs
    digests: dict[str, str] = field(default_factory=dict)
    #: the input digest of the stage now running (set by the driver)
    input_digest: str = ""
    #: lineage, approvals and changes, audit (``promotion.Services``; set by the driver)
    services: Any = None
    #: who runs this pipeline (``--as``, ``RAYMLOPS_USER`` or the OS user)
    actor: str = ""

    @property
    def automatic(self) -> str:
        """The actor of automatic decisions."""
        return f"raymlops (run {self.run_id}, started by {self.actor})"

    @property
    def tracking_uri(self) -> str:
        from raymlops.training.tracking import tracking_uri

        return tracking_uri(self.config, self.workspace)

    def __getitem__(self, stage: str) -> Any:
        return self.results[stage]


@dataclass(frozen=True)
class Stage:
    name: str
    reads: tuple[str, ...]
    needs: tuple[str, ...]
    output: type[BaseModel]
    run: Callable[[Context], BaseModel]
    events: Callable[[Context, Any], list[Event]]
    #: something outside the config and upstream outputs that the digest covers
    fingerprint: Callable[[Context], Any] | None = None
    before: Callable[[Context], None] | None = None
    still_valid: Callable[[Context, Any], bool] | None = None
    on_error: Callable[[Context, Exception], list[Event]] | None = None
    #: runs on every attempt (its work is not a reusable result)
    always: bool = False


from raymlops.pipeline.data_stages import (  # noqa: E402 - the adapters need Context above
    _ingest,
    _ingest_events,
    _preprocess,
    _preprocess_events,
    _validate,
    _validate_events,
    _validate_failed,
)
from raymlops.pipeline.model_stages import (  # noqa: E402
    _champion,
    _evaluate,
    _evaluate_events,
    _register,
    _register_events,
    _train,
    _train_events,
)
from raymlops.pipeline.serving_stages import (  # noqa: E402
    _awaiting,
    _deploy,
    _deploy_events,
    _monitor,
    _monitor_events,
    _still_serving,
)

STAGES: tuple[Stage, ...] = (
    Stage("ingest", ("data",), (), IngestResult, _ingest, _ingest_events,
          fingerprint=lambda ctx: ctx.source.fingerprint()),
    Stage("validate", ("data",), ("ingest",), ValidationResult, _validate, _validate_events,
          on_error=_validate_failed),
    Stage("preprocess", ("data",), ("validate",), PreprocessResult, _preprocess,
          _preprocess_events),
    Stage("train", ("project", "data", "train", "evaluation", "tracking"), ("preprocess",),
          TrainResult, _train, _train_events),
    # What is registered is the trained model under deploy.name: a changed gate, or
    # deploy.replicas, re-decides or redeploys, and never registers the model twice.
    # A rejected candidate is registered too, tagged rejected, and never deployed.
    Stage("register", (), ("train",), Registration, _register, _register_events,
          fingerprint=lambda ctx: {"name": ctx.config.deploy.name}),
    # Judged against the champion of the moment: a new champion means a new verdict.
    Stage("evaluate", ("data", "train", "evaluation", "gates"), ("train", "register"),
          EvaluationResult, _evaluate, _evaluate_events,
          fingerprint=lambda ctx: {"champion": (_champion(ctx) or {}).get("version")}),
    Stage("deploy", ("deploy", "environments"), ("register",), DeployResult, _deploy,
          _deploy_events, before=_awaiting, still_valid=_still_serving),
    # Replays traffic and measures drift on what serving captured: every attempt anew.
    Stage("monitor", ("deploy", "monitor"), ("deploy",), MonitorResult, _monitor,
          _monitor_events, always=True),
)
