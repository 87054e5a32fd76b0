"""The whole pipeline config, loaded from YAML and validated with key paths in every error."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from raymlops.config.base import NAME_PATTERN, Section
from raymlops.config.data import DataConfig
from raymlops.config.quality import (
    EnvironmentConfig,
    EvaluationConfig,
    GatesConfig,
    GovernanceConfig,
    check_gates,
)
from raymlops.config.serving import DeployConfig, LineageConfig, MonitorConfig, TrackingConfig
from raymlops.config.tenancy import TenancyConfig, qualify
from raymlops.config.train import TrainConfig
from raymlops.errors import ConfigError


class PipelineConfig(Section):
    project: str = Field("default", pattern=NAME_PATTERN)
    data: DataConfig
    train: TrainConfig
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    gates: GatesConfig = Field(default_factory=GatesConfig)
    environments: list[EnvironmentConfig] = Field(default_factory=list)
    governance: GovernanceConfig = Field(default_factory=GovernanceConfig)
    deploy: DeployConfig
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    lineage: LineageConfig = Field(default_factory=LineageConfig)
    #: a tenant on a shared cluster (names, routes, namespace, quota); see config/tenancy.py
    tenancy: TenancyConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _tenant_names(cls, data: Any) -> Any:
        return qualify(data)

    @model_validator(mode="after")
    def _cross_checks(self) -> PipelineConfig:
        for prefix, gates in [("gates", self.gates),
                              *((f"environments[{i}].gates", e.gates)
                                for i, e in enumerate(self.environments))]:
            check_gates(prefix, gates, task=self.data.task, sensitive=self.data.sensitive)
        names = [e.name for e in self.environments]
        if len(set(names)) != len(names):
            raise ValueError(f"environments: names must be unique, got {names}")
        for i, environment in enumerate(self.environments):
            role = environment.approvals.role
            if role is not None and role not in self.governance.roles:
                raise ValueError(f"environments[{i}].approvals.role: {role!r} is not a role in "
                                 f"governance.roles ({sorted(self.governance.roles)})")
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
        head = msg.split(":")[0]
        return msg if "." in head or head in PipelineConfig.model_fields else f"{loc}: {msg}"
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
