"""The ``train`` section: framework, params, scaling, checkpoints, failures, tuning."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from raymlops.config.base import Section


class ScalingSettings(Section):
    num_workers: int = Field(1, ge=1)
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, gt=0.0)
    gpus_per_worker: float = Field(1.0, gt=0.0)
    #: more resources each worker asks for: a custom resource a node type advertises
    #: (``{"TPU": 4}``, ``{"accelerator_type:A10G": 0.001}``); the autoscaler adds a node
    #: of a type that has it
    resources: dict[str, float] = Field(default_factory=dict)
    #: node labels each worker's node must carry (``{"accelerator": "nvidia-a10g"}``; the
    #: cluster/ configs label every node type with region and accelerator)
    label_selector: dict[str, str] = Field(default_factory=dict)

    @field_validator("resources")
    @classmethod
    def _extra_resources(cls, value: dict[str, float]) -> dict[str, float]:
        for name, amount in value.items():
            if name in ("CPU", "GPU", "memory"):
                raise ValueError(f"{name}: set it with cpus_per_worker / gpus_per_worker")
            if amount <= 0:
                raise ValueError(f"{name}: {amount} is not a positive amount")
        return value


class CheckpointSettings(Section):
    """``CheckpointConfig``: a checkpoint every ``frequency`` rounds (XGBoost) or epochs
    (torch); by default every 25 rounds or every epoch."""

    frequency: int | None = Field(None, ge=1)
    num_to_keep: int = Field(2, ge=1)


class FailureSettings(Section):
    """``FailureConfig``: how many worker-group failures a run survives."""

    max_failures: int = Field(2, ge=-1)


Distribution = Literal["uniform", "loguniform", "randint", "choice", "grid"]


class SearchDimension(Section):
    """One hyperparameter's range: ``{loguniform: [0.01, 0.3]}``, ``{choice: [4, 6, 8]}``."""

    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    randint: tuple[int, int] | None = None
    choice: list[Any] | None = None
    grid: list[Any] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SearchDimension:
        given = [k for k in ("uniform", "loguniform", "randint", "choice", "grid")
                 if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of uniform, loguniform, randint, choice, grid")
        bounds = self.uniform or self.loguniform or self.randint
        if bounds is not None and not bounds[0] < bounds[1]:
            raise ValueError(f"{given[0]}: the low bound must be below the high bound")
        if self.loguniform is not None and self.loguniform[0] <= 0:
            raise ValueError("loguniform: bounds must be positive")
        if (self.choice is not None and not self.choice) or (
                self.grid is not None and not self.grid):
            raise ValueError(f"{given[0]}: give at least one value")
        return self


class AshaSettings(Section):
    """Ray Tune's ASHA scheduler; ``max_t`` and ``grace_period`` count reports."""

    type: Literal["asha", "fifo"] = "asha"
    grace_period: int = Field(1, ge=1)
    reduction_factor: float = Field(2.0, gt=1.0)
    max_t: int | None = Field(None, ge=1)


class TuneSettings(Section):
    search_space: dict[str, SearchDimension] = Field(min_length=1)
    num_samples: int = Field(4, ge=1)
    max_concurrent: int = Field(1, ge=1)
    metric: str | None = None
    mode: Literal["min", "max"] | None = None
    scheduler: AshaSettings = Field(default_factory=AshaSettings)


class TrainConfig(Section):
    framework: Literal["xgboost", "torch"]
    params: dict[str, Any] = Field(default_factory=dict)
    scaling: ScalingSettings = Field(default_factory=ScalingSettings)
    seed: int = 42
    checkpoint: CheckpointSettings = Field(default_factory=CheckpointSettings)
    failure: FailureSettings = Field(default_factory=FailureSettings)
    tune: TuneSettings | None = None
