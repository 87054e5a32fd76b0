"""The work directory: where the embedded default keeps every piece of state.

Deleting the directory resets everything (MLflow store, lineage store, run folders,
captured traffic). Nothing here touches the disk until a method is called.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

DEFAULT_WORKDIR = ".raymlops"
WORKDIR_ENV = "RAYMLOPS_WORKDIR"


def default_workdir() -> Path:
    return Path(os.environ.get(WORKDIR_ENV) or DEFAULT_WORKDIR)


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


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
