"""The driver: a declared list of stages (``stages.STAGES``), resumable, one lineage record
per stage attempt (``driver.Pipeline``)."""

from raymlops.pipeline.driver import Pipeline, RunSummary
from raymlops.pipeline.stages import RecordedData

__all__ = ["Pipeline", "RecordedData", "RunSummary"]
