"""CLI failures: one line on stderr, a distinct exit code, no traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import free_port


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "raymlops.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=120, check=False)


def write_config(tmp_path: Path, **deploy) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({
        "data": {"source": str(tmp_path / "data.csv"), "target": "y", "task": "classification"},
        "train": {"framework": "xgboost"}, "deploy": {"name": "m", **deploy}}))
    return path


def assert_one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("raymlops:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_help_lists_every_command(tmp_path):
    result = run_cli("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in ("demo", "run", "lineage", "status", "schema", "drift"):
        assert command in result.stdout


def test_bad_config_exits_2_naming_the_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: {source: x.csv, target: y, task: classify}\n"
                    "train: {framework: xgboost}\ndeploy: {name: m}\n")
    result = run_cli("run", str(path), "--workdir", str(tmp_path / "w"), cwd=tmp_path)
    assert result.returncode == 2
    assert "data.task" in assert_one_line(result)


def test_missing_data_file_exits_3(tmp_path):
    result = run_cli("run", str(write_config(tmp_path)), "--workdir", str(tmp_path / "w"),
                     cwd=tmp_path)
    assert result.returncode == 3
    line = assert_one_line(result)
    assert "data.source" in line and "data.csv" in line


def test_port_in_use_exits_retryable_before_any_work(tmp_path):
    (tmp_path / "data.csv").write_text("a,y\n1,0\n2,1\n")
    port = free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        result = run_cli("run", str(write_config(tmp_path, port=port)), "--workdir",
                         str(tmp_path / "w"), cwd=tmp_path)
    assert result.returncode == 75
    assert f"port {port}" in assert_one_line(result)
    assert not (tmp_path / "w" / "runs").exists() or not any((tmp_path / "w" / "runs").iterdir())


def test_set_override_needs_key_equals_value(tmp_path):
    result = run_cli("run", str(write_config(tmp_path)), "--set", "deploy.port", cwd=tmp_path)
    assert result.returncode == 2
    assert "KEY=VALUE" in assert_one_line(result)


def test_until_names_the_stages_when_it_is_not_one(tmp_path):
    (tmp_path / "data.csv").write_text("a,y\n1,0\n2,1\n")
    result = run_cli("run", str(write_config(tmp_path)), "--until", "tran", "--workdir",
                     str(tmp_path / "w"), cwd=tmp_path)
    assert result.returncode == 2
    line = assert_one_line(result)
    assert "'tran' is not a stage" in line and "ingest, validate, preprocess, train" in line


def test_export_serve_without_a_cluster_says_where_to_point_it(tmp_path):
    result = run_cli("export-serve", "m", "--workdir", str(tmp_path / "w"), cwd=tmp_path)
    assert result.returncode == 9
    assert "--address" in assert_one_line(result)


def test_every_stage_has_a_job_entrypoint():
    from raymlops.pipeline.stages import STAGES

    jobs = Path(__file__).resolve().parents[2] / "jobs"
    for stage in STAGES:
        text = (jobs / f"{stage.name}.py").read_text()
        assert f'main(["run", "--until", "{stage.name}", *sys.argv[1:]])' in text
    for other in ("pipeline", "retrain", "drift", "demo"):
        assert (jobs / f"{other}.py").exists()
