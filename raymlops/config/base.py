"""What every config section shares: frozen models that refuse unknown keys."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

Task = Literal["classification", "regression"]
PiiAction = Literal["drop", "hash", "generalize"]

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
