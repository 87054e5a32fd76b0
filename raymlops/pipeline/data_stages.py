"""The data stages as the driver runs them: ingest, validate, preprocess."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from raymlops.data.ingest import IngestResult
from raymlops.data.preprocess import PreprocessResult
from raymlops.data.validate import ValidationResult
from raymlops.errors import DataError, DataValidationError
from raymlops.lineage.store import Event

if TYPE_CHECKING:
    from raymlops.pipeline.stages import Context

log = logging.getLogger("raymlops.pipeline")


def _ingest(ctx: Context) -> IngestResult:
    from raymlops.data.ingest import ingest

    result = ingest(ctx.config.data, source=ctx.source, run_dir=ctx.run_dir,
                    pii_key=ctx.pii_key, key_ref=ctx.key_ref,
                    protected=ctx.recorded is not None)
    if ctx.recorded is not None and result.digest != ctx.recorded.digest:
        raise DataError(f"retrain of {ctx.recorded.origin}: the snapshot at "
                        f"{ctx.recorded.snapshot} now has digest {result.digest}, not the "
                        f"recorded {ctx.recorded.digest}; the data changed since training")
    return result


def _ingest_events(ctx: Context, ing: IngestResult) -> list[Event]:
    events = []
    if ctx.recorded is not None:
        log.info("retrain of %s: data digest %s matches the recorded one",
                 ctx.recorded.origin, ing.digest)
        events.append(Event("retrain_data_checked", {
            "retrain_of": ctx.recorded.origin, "snapshot": str(ctx.recorded.snapshot),
            "recorded_digest": ctx.recorded.digest, "digest": ing.digest, "same": True},
            dataset_digest=ing.digest))
    events.append(Event("dataset_ingested", {
        "source": ing.source, "rows": ing.rows, "schema": ing.schema_,
        "pii": dict(ctx.config.data.pii), "profile": ing.profile, "excluded": ing.excluded,
        "read_at": ing.read_at, "positive_label": ing.positive_label or
        ctx.config.data.positive_label, "positive_reason": ing.positive_reason or
        "data.positive_label"}, dataset_digest=ing.digest))
    return events


def _validate(ctx: Context) -> ValidationResult:
    from raymlops.data.validate import validate
    from raymlops.features.normalize import RowSpec

    ing: IngestResult = ctx["ingest"]
    return validate(ctx.config.data, snapshot=Path(ing.snapshot), schema=ing.schema_,
                    spec=RowSpec.from_dict(ing.spec), excluded=ing.excluded,
                    run_dir=ctx.run_dir, positive=ing.positive_label)


def _validate_events(ctx: Context, val: ValidationResult) -> list[Event]:
    return [Event("data_validated", {
        "rows_in": val.rows_in, "rows_accepted": val.rows_accepted,
        "rows_quarantined": val.rows_quarantined, "reasons": val.reasons,
        "class_balance": val.class_balance, "quarantine": val.quarantine,
        "report": val.report_json}, dataset_digest=ctx["ingest"].digest)]


def _validate_failed(ctx: Context, exc: Exception) -> list[Event]:
    if not isinstance(exc, DataValidationError):
        return []
    from raymlops.training import tracking

    reports = [ctx.run_dir / "data" / "validation.json", ctx.run_dir / "data" / "validation.html"]
    blocked = tracking.log_blocked_data(tracking.setup_experiment(ctx.config, ctx.workspace),
                                        ctx.run_id, ctx.config, reports, str(exc))
    log.warning("data blocked before training: %s (MLflow run %s)", exc, blocked)
    return [Event("data_blocked", {"reason": str(exc), "mlflow_run_id": blocked,
                                   "report": str(reports[0])},
                  dataset_digest=ctx["ingest"].digest)]


def _preprocess(ctx: Context) -> PreprocessResult:
    from raymlops.data.preprocess import preprocess
    from raymlops.features.normalize import RowSpec

    data, ing = ctx.config.data, ctx["ingest"]
    return preprocess(
        accepted=Path(ctx["validate"].accepted), split=data.split,
        # a dropped PII id cannot key the split: rows are then hashed whole
        id_column=data.id_column if data.id_column in ing.schema_ else None,
        spec=RowSpec.from_dict(ing.spec),
        clip={c: [r.min, r.max] for c, r in data.clip.items()}, run_dir=ctx.run_dir)


def _preprocess_events(ctx: Context, prep: PreprocessResult) -> list[Event]:
    return [Event("features_fitted", {"rows": prep.rows, "features": len(prep.feature_names),
                                      "path": prep.features},
                  dataset_digest=ctx["ingest"].digest)]
