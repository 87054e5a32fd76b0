"""CLI failures: one line on stderr, a distinct exit code, no traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
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


def test_a_demo_too_small_for_its_fairness_gate_is_refused_before_any_work(tmp_path):
    result = run_cli("demo", "--rows", "500", "--workdir", str(tmp_path / "w"), cwd=tmp_path)
    assert result.returncode == 2
    line = assert_one_line(result)
    assert "--rows 500" in line and "at least 1200" in line and "fairness_min_rows=100" in line
    assert not (tmp_path / "w").exists()


def test_demo_rows_for_fairness_follows_the_generated_shares():
    from raymlops.data.demo import make_lending_table, rows_for_fairness

    least = rows_for_fairness(100, 0.2)
    assert least == 1200 and rows_for_fairness(30, 0.2) == 400
    # at that size the two larger gender groups of a 20 % holdout hold 100+ rows each
    for seed in range(5):
        holdout = make_lending_table(least, seed).sample(frac=0.2, random_state=seed)
        assert sorted(holdout["gender"].value_counts())[-2] >= 100


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
    line = assert_one_line(result)
    assert "--address" in line and "that serves m" in line


def test_quota_without_a_cluster_says_where_to_point_it(tmp_path):
    """Never starts a throwaway Ray whose GCS would hold a quota nobody else sees."""
    result = run_cli("quota", "set", "alpha", "--cpus", "2", "--workdir", str(tmp_path / "w"),
                     cwd=tmp_path)
    assert result.returncode == 9
    assert "whose quotas these are" in assert_one_line(result)


def test_every_stage_has_a_job_entrypoint():
    from raymlops.pipeline.stages import STAGES

    jobs = Path(__file__).resolve().parents[2] / "jobs"
    for stage in STAGES:
        text = (jobs / f"{stage.name}.py").read_text()
        assert f'main(["run", "--until", "{stage.name}", *sys.argv[1:]])' in text
    for other in ("pipeline", "retrain", "drift", "demo"):
        assert (jobs / f"{other}.py").exists()


@pytest.mark.parametrize("job", ["retrain", "rollout", "rollback", "drift"])
def test_a_jobs_documented_example_is_a_valid_command(job):
    """The `python jobs/<x>.py ...` line in each job's docstring parses as the command
    the job runs, so a platform engineer copying it gets no usage error."""
    import ast
    import re
    import shlex

    from raymlops.cli import build_parser

    path = Path(__file__).resolve().parents[2] / "jobs" / f"{job}.py"
    tree = ast.parse(path.read_text())
    example = re.search(rf"python jobs/{job}\.py (.*)", ast.get_docstring(tree) or "")
    assert example, f"jobs/{job}.py documents no example"
    command = re.search(r'main\(\["([a-z-]+)"', path.read_text()).group(1)
    args = build_parser().parse_args([command, *shlex.split(example.group(1))])
    assert args.command == command


def test_sigterm_exits_143_even_when_ray_turned_it_into_a_plain_interrupt(monkeypatch, capsys):
    """Ray's get re-raises any KeyboardInterrupt raised while it waits as a plain one, so
    a SIGTERM landing inside it reached the CLI as Ctrl-C (exit 130; seen in CI)."""
    import os
    import signal

    from raymlops import cli

    def handler(args):
        try:
            os.kill(os.getpid(), signal.SIGTERM)  # the CLI's handler raises Terminated
            signal.pthread_sigmask(signal.SIG_BLOCK, [])  # a point where Python runs it
        except KeyboardInterrupt:
            raise KeyboardInterrupt from None  # what Ray's get does with it
        return 0

    import argparse

    def ctrl_c(args):
        raise KeyboardInterrupt

    class Parser:
        def parse_args(self, argv):
            return argparse.Namespace(handler=argv[0], verbose=False, workdir=None)

    monkeypatch.setattr(cli, "build_parser", Parser)
    previous = signal.getsignal(signal.SIGTERM)
    assert cli.main([handler]) == 143
    assert "received signal SIGTERM" in capsys.readouterr().err
    # a Ctrl-C of its own stays 130: what the last call received does not stick
    assert cli.main([ctrl_c]) == 130
    assert signal.getsignal(signal.SIGTERM) is previous  # put back
