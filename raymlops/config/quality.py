"""Config sections for evaluation and gates: thresholds, slices, champion, fairness, behaviour."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from raymlops.config.base import NAME_PATTERN, Section

CLASSIFICATION_METRICS = ("roc_auc", "pr_auc", "accuracy", "log_loss", "brier", "ece", "f1",
                          "precision", "recall", "positive_rate")
REGRESSION_METRICS = ("rmse", "mae", "r2")
FairnessMeasure = Literal["demographic_parity_difference", "demographic_parity_ratio",
                          "equalized_odds_difference", "disparate_impact_ratio"]


class ThresholdSettings(Section):
    """How the decision threshold is chosen on the validation split."""

    objective: Literal["max_f1", "cost", "fixed"] = "max_f1"
    value: float | None = Field(None, ge=0.0, le=1.0)
    cost_fp: float = Field(1.0, ge=0.0)
    cost_fn: float = Field(1.0, ge=0.0)

    @model_validator(mode="after")
    def _fixed_needs_a_value(self) -> ThresholdSettings:
        if self.objective == "fixed" and self.value is None:
            raise ValueError("value: objective 'fixed' needs a value in [0, 1]")
        return self


class EvaluationConfig(Section):
    threshold: ThresholdSettings = Field(default_factory=ThresholdSettings)
    #: extra slices, as ``column op value``: ``income < 20000``, ``region in ['north']``
    slices: list[str] = Field(default_factory=list)
    calibration_bins: int = Field(10, ge=2, le=100)
    #: a sensitive group with fewer holdout rows is reported, not judged by fairness gates
    fairness_min_rows: int = Field(30, ge=1)

    @model_validator(mode="after")
    def _slices_parse(self) -> EvaluationConfig:
        from raymlops.evaluation.metrics import parse_slice

        for i, expression in enumerate(self.slices):
            try:
                parse_slice(expression)
            except ValueError as exc:
                raise ValueError(f"evaluation.slices[{i}]: {exc}") from None
        return self


class ChampionRule(Section):
    """MLflow's ``MetricThreshold``: the candidate must meet ``threshold`` and beat the
    champion by ``min_absolute_change`` and ``min_relative_change`` (0 means: no worse)."""

    threshold: float | None = None
    min_absolute_change: float | None = None
    min_relative_change: float | None = None
    greater_is_better: bool | None = None


class Bound(Section):
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _one_side_at_least(self) -> Bound:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is greater than max {self.max}")
        return self


class InvarianceCheck(Section):
    feature: str = Field(min_length=1)
    epsilon: float = Field(0.01, ge=0.0)
    values: list[Any] | None = None


class DirectionCheck(Section):
    feature: str = Field(min_length=1)
    direction: Literal["non_decreasing", "non_increasing"]
    delta: float | None = Field(None, gt=0.0)
    max_violations: float = Field(0.0, ge=0.0, le=1.0)


class SliceGate(Section):
    min: dict[str, float] = Field(min_length=1)
    columns: list[str] | None = None
    min_rows: int = Field(30, ge=1)


class GatesConfig(Section):
    """Absolute thresholds (``min``/``max``), champion-relative rules (``champion``),
    fairness bounds per sensitive column (``fairness``), and behavioural checks
    (``invariance``, ``direction``, ``slices``)."""

    min: dict[str, float] = Field(default_factory=dict)
    max: dict[str, float] = Field(default_factory=dict)
    champion: dict[str, ChampionRule] = Field(default_factory=dict)
    fairness: dict[str, dict[FairnessMeasure, Bound]] = Field(default_factory=dict)
    invariance: list[InvarianceCheck] = Field(default_factory=list)
    direction: list[DirectionCheck] = Field(default_factory=list)
    slices: SliceGate | None = None

    def merged(self, more: GatesConfig) -> GatesConfig:
        """These gates with an environment's added: its rules join these, and where both
        name the same metric or column, the environment's wins."""
        fairness = {**self.fairness}
        for column, bounds in more.fairness.items():
            fairness[column] = {**fairness.get(column, {}), **bounds}
        return GatesConfig(
            min={**self.min, **more.min}, max={**self.max, **more.max},
            champion={**self.champion, **more.champion}, fairness=fairness,
            invariance=[*self.invariance, *more.invariance],
            direction=[*self.direction, *more.direction],
            slices=more.slices if more.slices is not None else self.slices)

    def metric_names(self) -> list[tuple[str, str]]:
        """Every (key, metric) the gates name."""
        named = [(f"gates.min.{m}", m) for m in self.min]
        named += [(f"gates.max.{m}", m) for m in self.max]
        named += [(f"gates.champion.{m}", m) for m in self.champion]
        if self.slices is not None:
            named += [(f"gates.slices.min.{m}", m) for m in self.slices.min]
        return named


class ApprovalPolicy(Section):
    """Who must approve before a version enters an environment."""

    required: int = Field(0, ge=0)
    #: a role in ``governance.roles`` every approver must hold (None: anyone)
    role: str | None = None
    #: separation of duties: may the person who trained the model approve it?
    author_may_approve: bool = False


class EnvironmentConfig(Section):
    """One environment (``staging``, ``production``): its own gates, approval policy,
    registry alias and Serve route."""

    name: str = Field(pattern=NAME_PATTERN)
    gates: GatesConfig = Field(default_factory=GatesConfig)
    approvals: ApprovalPolicy = Field(default_factory=ApprovalPolicy)


class GovernanceConfig(Section):
    """Roles (role -> user names). Identities are claimed (``--as``, ``RAYMLOPS_USER``,
    the OS user) until verified identities arrive with the governance issue."""

    roles: dict[str, list[str]] = Field(default_factory=dict)


def check_gates(prefix: str, gates: GatesConfig, *, task: str, sensitive: list[str]) -> None:
    """Metric names known for the task; fairness only on ``data.sensitive`` columns."""
    known = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
    for key, metric in gates.metric_names():
        if metric not in known:
            raise ValueError(f"{prefix}{key.removeprefix('gates')}: unknown metric {metric!r} "
                             f"for task {task!r}; expected one of {', '.join(known)}")
    for column in gates.fairness:
        if task != "classification":
            raise ValueError(f"{prefix}.fairness: fairness bounds need a classification task")
        if column not in sensitive:
            raise ValueError(f"{prefix}.fairness.{column}: not a data.sensitive column "
                             f"({sensitive}); add it there so its groups are measured")
