"""The layout tells the data flow: stages never import each other, modules stay small."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "raymlops"
STAGES = ("data", "training", "evaluation", "registry", "serving", "monitoring")
_WHERE: dict[str, str] = __import__("raymlops")._WHERE  # the package's lazy names


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            if node.module == "raymlops":  # from raymlops import training / Pipeline
                found.update(_WHERE.get(alias.name, f"raymlops.{alias.name}")
                             for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_imports_no_other_stage(stage):
    """Only the driver (raymlops.pipeline) knows the order; shared names live in neutral
    modules (raymlops.names, raymlops.features, raymlops._internal)."""
    offenders = []
    for path in sorted((PACKAGE / stage).rglob("*.py")):
        for module in _imports(path):
            parts = module.split(".")
            if parts[0] == "raymlops" and len(parts) > 1 and parts[1] in STAGES \
                    and parts[1] != stage:
                offenders.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert offenders == []


def test_no_stage_imports_the_driver_or_the_lineage_store():
    for stage in STAGES:
        for path in sorted((PACKAGE / stage).rglob("*.py")):
            for module in _imports(path):
                assert not module.startswith(("raymlops.pipeline", "raymlops.lineage",
                                              "raymlops.cli")), (path, module)


def test_modules_stay_under_about_400_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 420}
    assert long == {}
