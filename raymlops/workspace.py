"""The work directory: where the embedded default keeps every piece of state.

Deleting the directory resets everything (MLflow store, lineage store, run folders,
captured traffic). Nothing here touches the disk until a method is called.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

DEFAULT_WORKDIR = ".raymlops"
WORKDIR_ENV = "RAYMLOPS_WORKDIR"


def default_workdir() -> Path:
    return Path(os.environ.get(WORKDIR_ENV) or DEFAULT_WORKDIR)


#: A run id names folders, Ray Train runs and MLflow filter strings: a safe alphabet only.
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def check_run_id(run_id: str) -> str:
    """``run_id`` unchanged if it is safe in paths and filter strings, else ConfigError."""
    from raymlops.errors import ConfigError

    if not RUN_ID_PATTERN.fullmatch(run_id) or ".." in run_id:
        raise ConfigError(f"--run-id {run_id[:80]!r}: use 1 to 64 letters, digits, '.', '_' "
                          "or '-', starting with a letter or digit (as the ids raymlops "
                          "makes, e.g. 20261201-120000-ab12cd)")
    return run_id


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def at(cls, root: str | Path | None = None) -> Workspace:
        return cls(Path(root).expanduser().resolve() if root else default_workdir().resolve())

    def ensure(self) -> Workspace:
        for path in (self.root, self.runs_dir, self.artifacts_dir, self.capture_dir):
            path.mkdir(parents=True, exist_ok=True)
        return self

    @property
    def mlflow_uri(self) -> str:
        return f"sqlite:///{self.root / 'mlflow.db'}"

    @property
    def artifacts_dir(self) -> Path:
        return self.root / "mlartifacts"

    @property
    def lineage_url(self) -> str:
        return f"sqlite:///{self.root / 'lineage.db'}"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def capture_dir(self) -> Path:
        return self.root / "capture"

    @property
    def demo_data_dir(self) -> Path:
        return self.root / "demo-data"

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def expand(self, path: str) -> str:
        """Expand ``{workdir}`` in a configured path."""
        return path.replace("{workdir}", str(self.root))
