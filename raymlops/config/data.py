"""The ``data`` section: source, target, features, PII, validation rules, split."""

from __future__ import annotations

from pydantic import Field, model_validator

from raymlops.config.base import PiiAction, Section, Task


class RangeRule(Section):
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> RangeRule:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is greater than max {self.max}")
        return self


class ValidationConfig(Section):
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


class SplitConfig(Section):
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    valid_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    seed: int = 42

    @model_validator(mode="after")
    def _leaves_training_rows(self) -> SplitConfig:
        if self.test_fraction + self.valid_fraction >= 0.9:
            raise ValueError("data.split: test_fraction + valid_fraction must stay below 0.9")
        return self


class DataConfig(Section):
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
