"""Typed pipeline config, loaded from YAML and frozen after load.

Unknown keys, missing keys and wrong types fail before any work starts, with the
key's dotted path and the expected type. Key names follow DESIGN.md section 3.

Paths in ``data.source`` and ``monitor.replay.source`` may contain ``{workdir}``,
which the driver expands to the work directory; other relative paths are taken
relative to the current directory.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from raymlops.errors import ConfigError

Task = Literal["classification", "regression"]
PiiAction = Literal["drop", "hash", "generalize"]

CLASSIFICATION_METRICS = ("roc_auc", "accuracy", "log_loss", "f1", "precision", "recall")
REGRESSION_METRICS = ("rmse", "mae", "r2")

_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RangeRule(_Section):
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> RangeRule:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is greater than max {self.max}")
        return self


class ValidationConfig(_Section):
    """Row rules quarantine rows; dataset rules (schema, counts, balance) fail the stage."""

    max_reject_fraction: float = Field(0.05, ge=0.0, le=1.0)
    schema_: str | None = Field(None, alias="schema")
    ranges: dict[str, RangeRule] = Field(default_factory=dict)
    allowed: dict[str, list[str | int | float]] = Field(default_factory=dict)
    not_null: list[str] = Field(default_factory=list)
    unique_id: bool = True
    min_rows: int = Field(10, ge=1)
    max_rows: int | None = Field(None, ge=1)
    min_class_fraction: float = Field(0.0, ge=0.0, lt=0.5)


class SplitConfig(_Section):
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    valid_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    seed: int = 42

    @model_validator(mode="after")
    def _leaves_training_rows(self) -> SplitConfig:
        if self.test_fraction + self.valid_fraction >= 0.9:
            raise ValueError("data.split: test_fraction + valid_fraction must stay below 0.9")
        return self


class DataConfig(_Section):
    source: str = Field(min_length=1)
    query: str | None = None
    table: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$")
    incremental: bool = False
    target: str = Field(min_length=1)
    task: Task
    id_column: str | None = None
    categorical: list[str] | None = None
    numeric: list[str] | None = None
    sensitive: list[str] = Field(default_factory=list)
    pii: dict[str, PiiAction] = Field(default_factory=dict)
    #: The positive class of a classification label, compared after stripping and case
    #: folding. An unquoted YAML ``Yes``/``True``/``On`` loads as a boolean and matches
    #: yes/true/y/on/1 (``No``/``False``/``Off``: no/false/n/off/0).
    positive_label: bool | str | int | float | None = None
    pii_key_env: str = Field("RAYMLOPS_PII_KEY", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    clip: dict[str, RangeRule] = Field(default_factory=dict)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)


class ScalingSettings(_Section):
    num_workers: int = Field(1, ge=1)
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, gt=0.0)
    gpus_per_worker: float = Field(1.0, gt=0.0)


class CheckpointSettings(_Section):
    """``CheckpointConfig``: a checkpoint every ``frequency`` rounds (XGBoost) or epochs
    (torch); by default every 25 rounds or every epoch."""

    frequency: int | None = Field(None, ge=1)
    num_to_keep: int = Field(2, ge=1)


class FailureSettings(_Section):
    """``FailureConfig``: how many worker-group failures a run survives."""

    max_failures: int = Field(2, ge=-1)


Distribution = Literal["uniform", "loguniform", "randint", "choice", "grid"]


class SearchDimension(_Section):
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


class AshaSettings(_Section):
    """Ray Tune's ASHA scheduler; ``max_t`` and ``grace_period`` count reports."""

    type: Literal["asha", "fifo"] = "asha"
    grace_period: int = Field(1, ge=1)
    reduction_factor: float = Field(2.0, gt=1.0)
    max_t: int | None = Field(None, ge=1)


class TuneSettings(_Section):
    search_space: dict[str, SearchDimension] = Field(min_length=1)
    num_samples: int = Field(4, ge=1)
    max_concurrent: int = Field(1, ge=1)
    metric: str | None = None
    mode: Literal["min", "max"] | None = None
    scheduler: AshaSettings = Field(default_factory=AshaSettings)


class TrainConfig(_Section):
    framework: Literal["xgboost", "torch"]
    params: dict[str, Any] = Field(default_factory=dict)
    scaling: ScalingSettings = Field(default_factory=ScalingSettings)
    seed: int = 42
    checkpoint: CheckpointSettings = Field(default_factory=CheckpointSettings)
    failure: FailureSettings = Field(default_factory=FailureSettings)
    tune: TuneSettings | None = None


class GatesConfig(_Section):
    """Absolute metric thresholds: ``min: {roc_auc: 0.7}``, ``max: {rmse: 3.0}``."""

    min: dict[str, float] = Field(default_factory=dict)
    max: dict[str, float] = Field(default_factory=dict)


class DeployConfig(_Section):
    name: str = Field(pattern=_NAME_PATTERN)
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


class DriftConfig(_Section):
    p_value: float = Field(0.01, gt=0.0, lt=1.0)
    min_effect: float = Field(0.1, ge=0.0, le=1.0)
    min_rows: int = Field(50, ge=1)


class ReplayConfig(_Section):
    """Rows sent through the live endpoint after a rollout (smoke traffic, demo burst)."""

    source: str = Field(min_length=1)
    rows: int = Field(300, ge=1)
    concurrency: int = Field(4, ge=1, le=64)


class MonitorConfig(_Section):
    drift: DriftConfig = Field(default_factory=DriftConfig)
    replay: ReplayConfig | None = None


class TrackingConfig(_Section):
    uri: str | None = None
    experiment: str | None = None


class LineageConfig(_Section):
    url: str | None = None


class PipelineConfig(_Section):
    project: str = Field("default", pattern=_NAME_PATTERN)
    data: DataConfig
    train: TrainConfig
    gates: GatesConfig = Field(default_factory=GatesConfig)
    deploy: DeployConfig
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    lineage: LineageConfig = Field(default_factory=LineageConfig)

    @model_validator(mode="after")
    def _cross_checks(self) -> PipelineConfig:
        known = CLASSIFICATION_METRICS if self.data.task == "classification" else REGRESSION_METRICS
        for side in ("min", "max"):
            for metric in getattr(self.gates, side):
                if metric not in known:
                    raise ValueError(
                        f"gates.{side}.{metric}: unknown metric for task "
                        f"{self.data.task!r}; expected one of {', '.join(known)}"
                    )
        features = set(self.data.categorical or []) | set(self.data.numeric or [])
        for col in (self.data.target, self.data.id_column):
            if col and col in features:
                raise ValueError(f"data: column {col!r} cannot be both a feature and target/id")
        if self.data.target in self.data.pii:
            raise ValueError(f"data.pii.{self.data.target}: the target cannot be a PII column")
        return self


def _format_error(err: Mapping[str, Any]) -> str:
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    kind = err["type"]
    if kind == "missing":
        return f"{loc}: required key is missing"
    if kind == "extra_forbidden":
        return f"{loc}: unknown key"
    msg = str(err["msg"])
    if kind == "value_error":
        msg = msg.removeprefix("Value error, ")
        return msg if msg.split(":")[0].count(".") else f"{loc}: {msg}"
    return f"{loc}: {msg} (got {err.get('input')!r})"


def _section_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The config section (model class) that holds the key at ``loc``."""
    current: Any = model
    for part in loc[:-1]:
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return None
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        candidates = [a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not candidates:
            return None
        current = candidates[0]
    return current


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    section = _section_at(model, loc)
    if section is None:
        return None
    return sorted(f.alias or name for name, f in section.model_fields.items())


def _expected_type(model: type[BaseModel], loc: tuple[Any, ...]) -> str | None:
    section = _section_at(model, loc)
    field = section.model_fields.get(str(loc[-1])) if section is not None and loc else None
    if field is None:
        return None
    ann = field.annotation
    if getattr(ann, "__origin__", None) is Literal:
        return " | ".join(repr(a) for a in ann.__args__)  # type: ignore[union-attr]
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return f"a mapping with keys {', '.join(sorted(ann.model_fields))}"
    return getattr(ann, "__name__", None) or str(ann).replace("typing.", "")


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{dotted}: cannot set a key below {part!r}, which is not a mapping")
        node = child
    node[parts[-1]] = value


def load_config(
    source: str | Path | Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None,
) -> PipelineConfig:
    """Load and validate a pipeline config from a YAML path or a mapping.

    ``overrides`` maps dotted keys to values (``{"deploy.port": 8123}``) and is applied
    before validation, so an override is checked like any other key.
    """
    if isinstance(source, Mapping):
        raw: Any = dict(source)
        origin = "<mapping>"
    else:
        path = Path(source)
        origin = str(path)
        if not path.is_file():
            raise ConfigError(f"config file {origin} does not exist; pass the path of a YAML file")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"{origin}: not valid YAML{where}: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{origin}: the top level must be a mapping of keys, got {type(raw).__name__}"
        )
    raw = _deep_copy(raw)
    for key, value in (overrides or {}).items():
        _set_dotted(raw, key, value)
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            line = _format_error(err)
            if err["type"] == "missing":
                expected = _expected_type(PipelineConfig, tuple(err["loc"]))
                if expected:
                    line += f" (expected {expected})"
            if err["type"] == "extra_forbidden":
                allowed = _allowed_keys(PipelineConfig, tuple(err["loc"]))
                if allowed:
                    line += f"; allowed keys here: {', '.join(allowed)}"
            lines.append(line)
        head = f"{origin}: {lines[0]}"
        more = f" (and {len(lines) - 1} more: {'; '.join(lines[1:])})" if len(lines) > 1 else ""
        raise ConfigError(head + more) from None


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def config_snapshot(config: PipelineConfig) -> dict[str, Any]:
    """The config as plain JSON-able data (what MLflow and lineage record)."""
    return config.model_dump(mode="json", by_alias=True)
