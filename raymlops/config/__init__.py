"""Typed pipeline config, loaded from YAML and frozen after load.

Unknown keys, missing keys and wrong types fail before any work starts, with the
key's dotted path and the expected type. Key names follow DESIGN.md section 3.
One module per part of the config: ``data``, ``train``, ``quality`` (evaluation,
gates, environments, governance), ``serving`` (deploy, monitor, stores), and
``loader`` (the whole ``PipelineConfig`` and ``load_config``).

Paths in ``data.source`` and ``monitor.replay.source`` may contain ``{workdir}``,
which the driver expands to the work directory; other relative paths are taken
relative to the current directory.
"""

from raymlops.config.base import PiiAction, Section, Task
from raymlops.config.data import DataConfig, RangeRule, SplitConfig, ValidationConfig
from raymlops.config.loader import PipelineConfig, config_snapshot, load_config
from raymlops.config.quality import (
    CLASSIFICATION_METRICS,
    REGRESSION_METRICS,
    ApprovalPolicy,
    Bound,
    ChampionRule,
    DirectionCheck,
    EnvironmentConfig,
    EvaluationConfig,
    GatesConfig,
    GovernanceConfig,
    InvarianceCheck,
    SliceGate,
    ThresholdSettings,
)
from raymlops.config.serving import (
    DeployConfig,
    DriftConfig,
    LineageConfig,
    MonitorConfig,
    ReplayConfig,
    TrackingConfig,
)
from raymlops.config.train import (
    AshaSettings,
    CheckpointSettings,
    FailureSettings,
    ScalingSettings,
    SearchDimension,
    TrainConfig,
    TuneSettings,
)

__all__ = [
    "CLASSIFICATION_METRICS",
    "REGRESSION_METRICS",
    "ApprovalPolicy",
    "AshaSettings",
    "Bound",
    "ChampionRule",
    "CheckpointSettings",
    "DataConfig",
    "DeployConfig",
    "DirectionCheck",
    "DriftConfig",
    "EnvironmentConfig",
    "EvaluationConfig",
    "FailureSettings",
    "GatesConfig",
    "GovernanceConfig",
    "InvarianceCheck",
    "LineageConfig",
    "MonitorConfig",
    "PiiAction",
    "PipelineConfig",
    "RangeRule",
    "ReplayConfig",
    "ScalingSettings",
    "SearchDimension",
    "Section",
    "SliceGate",
    "SplitConfig",
    "Task",
    "ThresholdSettings",
    "TrackingConfig",
    "TrainConfig",
    "TuneSettings",
    "ValidationConfig",
    "config_snapshot",
    "load_config",
]
