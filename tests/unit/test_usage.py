"""Resource accounting's arithmetic, without Ray: stage windows against what tasks and
actors held, totals, and the per-tenant, per-model, per-day sums with prices."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from raymlops._internal import usage
from raymlops.pipeline.accounting import aggregate


def test_each_stage_is_charged_for_what_overlapped_its_window(monkeypatch):
    meter = usage.UsageMeter()
    meter.windows = {"preprocess": usage._Window(100.0, 110.0, 0, 1000),
                     "train": usage._Window(110.0, 130.0, 1000, 1000, peak_memory=5e9)}
    held = [(101.0, 105.0, {"CPU": 1.0}),            # a task inside preprocess: 4 s
            (108.0, 120.0, {"CPU": 2.0, "GPU": 1.0}),  # an actor across both: 2 s + 10 s
            (125.0, None, {"CPU": 0.5})]              # still alive at collection: clipped
    monkeypatch.setattr(usage, "_held_resources", lambda: held)
    out = meter.collect()
    assert out["preprocess"]["cpu_seconds"] == pytest.approx(4 + 2 * 2)
    assert out["preprocess"]["gpu_seconds"] == pytest.approx(2)
    assert out["preprocess"]["spilled_bytes"] == 1000
    assert out["train"]["cpu_seconds"] == pytest.approx(2 * 10 + 0.5 * 5)
    assert out["train"]["gpu_seconds"] == pytest.approx(10)
    assert out["train"]["spilled_bytes"] == 0 and out["train"]["peak_memory_bytes"] == 5e9
    total = usage.totals(out)
    assert total["cpu_seconds"] == pytest.approx(8 + 22.5)
    assert total["peak_memory_bytes"] == 5e9 and total["wall_seconds"] == 30


def test_without_the_state_api_the_run_says_so_instead_of_zero(monkeypatch):
    meter = usage.UsageMeter()
    meter.windows = {"train": usage._Window(0.0, 1.0)}

    def unavailable():
        raise ConnectionError("dashboard down")

    monkeypatch.setattr(usage, "_held_resources", unavailable)
    assert meter.collect()["train"]["unmeasured"] == 1.0


def _event(project, model, day, cpu, gpu=0.0, run=None):
    at = datetime.fromisoformat(day).replace(tzinfo=UTC)
    return SimpleNamespace(kind="resources_used", run_id=run or f"{project}-{day}", ts=at,
                           payload={"project": project, "model": model, "total": {
            "cpu_seconds": cpu, "gpu_seconds": gpu, "peak_memory_bytes": cpu * 1e6,
            "spilled_bytes": 0.0}})


def test_usage_sums_per_project_model_and_day_with_prices():
    events = [_event("risk", "pd", "2026-12-01T08:00:00", 3600, 1800),
              _event("risk", "pd", "2026-12-01T20:00:00", 7200),
              _event("risk", "pd", "2026-12-02T08:00:00", 360),
              _event("growth", "churn", "2026-12-01T09:00:00", 36),
              # a resumed attempt of that run: its use counts, the run once
              _event("growth", "churn", "2026-12-01T10:00:00", 36,
                     run="growth-2026-12-01T09:00:00")]
    rows = aggregate(events, prices={"cpu_hour": 0.05, "gpu_hour": 2.0, "currency": "EUR"})
    assert [(r["day"], r["project"], r["runs"]) for r in rows] == [
        ("2026-12-01", "growth", 1), ("2026-12-01", "risk", 2), ("2026-12-02", "risk", 1)]
    assert rows[0]["cpu_hours"] == pytest.approx(0.02)
    risk = rows[1]
    assert risk["cpu_hours"] == pytest.approx(3.0) and risk["gpu_hours"] == pytest.approx(0.5)
    assert risk["cost"] == pytest.approx(3 * 0.05 + 0.5 * 2.0) and risk["currency"] == "EUR"
    assert risk["peak_memory_bytes"] == 7200e6
    only = aggregate(events, project="risk",
                     since=datetime(2026, 12, 2, tzinfo=UTC))
    assert [(r["day"], r["cpu_hours"]) for r in only] == [("2026-12-02", 0.1)]


def test_the_usage_command_rejects_a_bad_price_table_and_time(tmp_path):
    from raymlops.cli.usage import _prices, _since
    from raymlops.errors import ConfigError

    bad = tmp_path / "prices.yaml"
    bad.write_text("cpu_hour: -1\n")
    with pytest.raises(ConfigError, match="cpu_hour must be a number"):
        _prices(str(bad))
    bad.write_text("cpu_hour: 1\ngpu_hours: 2\n")
    with pytest.raises(ConfigError, match="unknown key 'gpu_hours'"):
        _prices(str(bad))
    with pytest.raises(ConfigError, match="--since 'yesterday'"):
        _since("yesterday")
    assert _since("2026-12-01").tzinfo is UTC


def test_memory_in_use_sums_the_live_nodes_of_the_dashboards_summary():
    """``mem`` is [total, available, percent, used], as Ray's reporter sends it; a dead
    node's last reading is not memory in use now."""
    summary = {"data": {"summary": [
        {"mem": [16e9, 10e9, 37.5, 6e9], "raylet": {"state": "ALIVE"}},
        {"mem": [8e9, 7e9, 12.5, 1e9], "raylet": {"state": "ALIVE"}},
        {"mem": [8e9, 1e9, 87.5, 7e9], "raylet": {"state": "DEAD"}},
        {"raylet": {"state": "ALIVE"}},  # not reported yet
        {"mem": [8e9, 4e9, 50.0, 4e9]},  # no raylet state: not known to be alive
    ]}}
    assert usage._memory_in_use(summary) == 7e9
    assert usage._memory_in_use({"data": {"summary": []}}) == 0.0


def test_a_stage_without_any_memory_reading_says_so_instead_of_zero(monkeypatch):
    def no_answer():
        raise ConnectionError("dashboard and metrics pages unreachable")

    monkeypatch.setattr(usage, "_node_memory", no_answer)
    monkeypatch.setattr(usage, "_spilled", lambda: None)
    monkeypatch.setattr(usage, "_held_resources", lambda: [])
    meter = usage.UsageMeter(interval_s=3600)
    meter.begin("train")
    meter.end("train")
    monkeypatch.setattr(usage, "_node_memory", lambda: 3e9)
    meter.begin("deploy")
    meter.end("deploy")
    out = meter.collect()
    assert out["train"]["memory_unmeasured"] == 1.0 and out["train"]["peak_memory_bytes"] == 0
    assert "memory_unmeasured" not in out["deploy"] and out["deploy"]["peak_memory_bytes"] == 3e9


def test_without_the_dashboard_memory_comes_from_the_nodes_metrics_pages(monkeypatch):
    def unreachable():
        raise LookupError("the cluster runs no dashboard")

    monkeypatch.setattr(usage, "_dashboard_url", unreachable)
    monkeypatch.setattr(usage, "_memory_from_metrics", lambda: 5e9)
    assert usage._node_memory() == 5e9
