"""The ``deploy``, ``monitor``, ``tracking`` and ``lineage`` sections."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from raymlops.config.base import NAME_PATTERN, Section


class AutoscalingConfig(Section):
    """Serve's ``autoscaling_config`` for the serving replicas."""

    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(4, ge=1)
    target_ongoing_requests: float = Field(8.0, gt=0.0)
    upscale_delay_s: float = Field(30.0, ge=0.0)
    downscale_delay_s: float = Field(600.0, ge=0.0)

    @model_validator(mode="after")
    def _ordered(self) -> AutoscalingConfig:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) is above max_replicas "
                             f"({self.max_replicas})")
        return self


class BatchingConfig(Section):
    """Each version's own ``@serve.batch`` queue."""

    max_batch_size: int = Field(16, ge=1, le=4096)
    batch_wait_timeout_s: float = Field(0.002, ge=0.0, le=10.0)


class RoutingConfig(Section):
    #: a request's sticky key: this header, else this field of its (first) row
    sticky_header: str = Field("x-routing-key", min_length=1)
    sticky_field: str | None = None
    #: whether ``x-raymlops-version`` (and OIP's /versions/<v>/ paths) may pin a version
    allow_override: bool = False


class DeployConfig(Section):
    name: str = Field(pattern=NAME_PATTERN)
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    #: colocated: one deployment holds every live version (no extra hop); separate: one
    #: deployment per version behind an ingress; auto: decided from size and resources
    placement: Literal["auto", "colocated", "separate"] = "auto"
    #: auto places versions separately when their artifacts together exceed this
    colocate_max_mb: float = Field(512.0, gt=0.0)
    #: the root route (/invocations, /v2/...): auto takes it when no other app holds it
    standard_paths: Literal["auto", "always", "never"] = "auto"
    #: where the application answers besides the root (default /<name>); a project's
    #: application answers under /<project>/<model> (config/tenancy.py)
    route_prefix: str | None = Field(None, pattern=r"^/[A-Za-z0-9_.\-/]*[A-Za-z0-9_.\-]$")
    replicas: int = Field(1, ge=1)
    autoscaling: AutoscalingConfig | None = None
    cpus_per_replica: float = Field(0.25, gt=0.0)
    gpus_per_replica: float = Field(0.0, ge=0.0)
    #: the separate shape's ingress
    router_cpus: float = Field(0.1, gt=0.0)
    max_ongoing_requests: int = Field(64, ge=1)
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    #: Serve's HTTP ingress: its proxy actor, or HAProxy (RAY_SERVE_ENABLE_HA_PROXY),
    #: measured 3.2x faster here (benchmarks/serving_vs_bare.py); with HAProxy the
    #: replicas accept HTTP directly and bind on all interfaces, and HAProxy binds
    #: 0.0.0.0:9101 and :8404 as well
    ingress: Literal["proxy", "haproxy"] = "proxy"
    #: Serve's per-request access log lines (the metrics count every request anyway)
    access_log: bool = False
    batching: BatchingConfig = Field(default_factory=BatchingConfig)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
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
