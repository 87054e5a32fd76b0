"""raymlops: the whole MLOps loop on Ray.

The driver (``raymlops.pipeline``) walks the stages in order:
ingest -> validate -> preprocess (``raymlops.data``) -> train (``raymlops.training``)
-> evaluate + gates (``raymlops.evaluation``) -> register (``raymlops.registry``)
-> deploy (``raymlops.serving``) -> monitor (``raymlops.monitoring``), writing one
event per stage to the lineage store (``raymlops.lineage``). Stages never import each
other; only the driver knows the order.

Importing this package starts nothing, touches no file and imports none of the stages:
the names below load on first use (PEP 562). Every Ray worker that unpickles a
raymlops function imports this package first; the whole driver (scikit-learn, SciPy,
SQLAlchemy, MLflow) cost each of them about 1.6 CPU-seconds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from raymlops.config import PipelineConfig, load_config
    from raymlops.errors import RaymlopsError
    from raymlops.pipeline import Pipeline, RunSummary

__all__ = ["Pipeline", "PipelineConfig", "RaymlopsError", "RunSummary", "load_config"]
__version__ = "0.1.0"

_WHERE = {"PipelineConfig": "raymlops.config", "load_config": "raymlops.config",
          "RaymlopsError": "raymlops.errors", "Pipeline": "raymlops.pipeline",
          "RunSummary": "raymlops.pipeline"}


if not TYPE_CHECKING:  # a type checker resolves the names above, and no others

    def __getattr__(name: str) -> Any:
        module = _WHERE.get(name)
        if module is None:
            raise AttributeError(f"module 'raymlops' has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # once: later lookups skip this function
        return value


def __dir__() -> list[str]:
    return sorted([*__all__, "__version__"])
