"""raymlops: the whole MLOps loop on Ray.

The driver (``raymlops.pipeline``) walks the stages in order:
ingest -> validate -> preprocess (``raymlops.data``) -> train (``raymlops.training``)
-> evaluate + gates (``raymlops.evaluation``) -> register (``raymlops.registry``)
-> deploy (``raymlops.serving``) -> monitor (``raymlops.monitoring``), writing one
event per stage to the lineage store (``raymlops.lineage``). Stages never import each
other; only the driver knows the order.

Importing this package starts nothing and touches no file.
"""

from raymlops.config import PipelineConfig, load_config
from raymlops.errors import RaymlopsError
from raymlops.pipeline import Pipeline, RunSummary

__all__ = ["Pipeline", "PipelineConfig", "RaymlopsError", "RunSummary", "load_config"]
__version__ = "0.1.0"
