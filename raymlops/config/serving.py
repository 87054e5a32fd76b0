"""The ``deploy``, ``monitor``, ``tracking`` and ``lineage`` sections."""

from __future__ import annotations

from pydantic import Field

from raymlops.config.base import NAME_PATTERN, Section


class DeployConfig(Section):
    name: str = Field(pattern=NAME_PATTERN)
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    replicas: int = Field(1, ge=1)
    cpus_per_replica: float = Field(0.25, gt=0.0)
    router_cpus: float = Field(0.1, gt=0.0)
    capture: bool = True
    #: A replica writes its captured rows when it holds this many, or when the oldest
    #: has waited ``capture_flush_s`` seconds (a timer), on request, and on shutdown.
    capture_max_rows: int = Field(500, ge=1)
    capture_flush_s: float = Field(2.0, gt=0.0)


class DriftConfig(Section):
    p_value: float = Field(0.01, gt=0.0, lt=1.0)
    min_effect: float = Field(0.1, ge=0.0, le=1.0)
    min_rows: int = Field(50, ge=1)


class ReplayConfig(Section):
    """Rows sent through the live endpoint after a rollout (smoke traffic, demo burst)."""

    source: str = Field(min_length=1)
    rows: int = Field(300, ge=1)
    concurrency: int = Field(4, ge=1, le=64)


class MonitorConfig(Section):
    drift: DriftConfig = Field(default_factory=DriftConfig)
    replay: ReplayConfig | None = None


class TrackingConfig(Section):
    uri: str | None = None
    experiment: str | None = None


class LineageConfig(Section):
    url: str | None = None
