"""Monitor: replay traffic through the endpoint if configured, then compute drift.

Drift compares the rows the serving replicas captured with the training reference.
Before reading the capture it asks every replica to write what it buffered (``flush``,
which the driver passes in: serving owns the replicas) and waits for that condition,
not for a fixed time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel

from raymlops._internal.io import read_local_table
from raymlops.config import PipelineConfig
from raymlops.monitoring import drift
from raymlops.monitoring.replay import replay
from raymlops.names import CAPTURED_AT, capture_dir
from raymlops.workspace import Workspace

log = logging.getLogger(__name__)


class MonitorResult(BaseModel):
    replay: dict[str, Any]
    captured_rows: int
    drift_report: str | None
    drift_html: str | None
    drift_verdict: str
    drifted_columns: list[str]


def read_capture(directory: Path, since: float | None = None) -> pd.DataFrame:
    files = sorted(directory.glob("*.parquet"))
    if not files:
        return pd.DataFrame()
    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    if since is not None and CAPTURED_AT in frame.columns:
        frame = frame[frame[CAPTURED_AT] >= since]
    return frame


def monitor(config: PipelineConfig, *, workspace: Workspace, run_dir: Path, endpoint: str,
            versions: list[str], reference_dir: Path, numeric: list[str],
            categorical: list[str], flush: Callable[[], int], app: str | None = None,
            timeout_s: float = 60.0) -> MonitorResult:
    """``flush`` makes every serving replica write its buffered capture (and returns once
    all of them did)."""
    started = time.time()
    sent: dict[str, Any] = {}
    expected = 0
    spec = config.monitor.replay
    if spec is not None:
        table = read_local_table(workspace.expand(spec.source), key="monitor.replay.source")
        drop = [c for c in (config.data.target,) if c in table.columns]
        rows = table.drop(columns=drop).head(spec.rows)
        result = replay(endpoint, rows, concurrency=spec.concurrency)
        sent = result.model_dump()
        expected = result.ok
        log.info("replayed %d rows through %s: %d ok, %d errors, p50 %.1f ms, p99 %.1f ms",
                 result.requests, endpoint, result.ok, result.errors, result.p50_ms,
                 result.p99_ms)
    capture_dirs = [capture_dir(workspace.capture_dir, app or config.deploy.name, v)
                    for v in versions]
    deadline = time.monotonic() + timeout_s
    current = pd.DataFrame()
    while True:
        flush()
        frames = [read_capture(d, since=started) for d in capture_dirs]
        current = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(
            len(f) for f in frames) else pd.DataFrame()
        if len(current) >= expected or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if len(current) == 0:
        log.info("no captured traffic yet: drift is computed once requests arrive")
        return MonitorResult(replay=sent, captured_rows=0, drift_report=None, drift_html=None,
                             drift_verdict="no_traffic", drifted_columns=[])
    reference = pd.read_parquet(reference_dir)
    report = drift.compute_drift(reference, current, numeric=numeric, categorical=categorical,
                                 config=config.monitor.drift)
    json_path, html_path = drift.write_report(report, run_dir / "reports")
    log.info("drift verdict: %s (%s) on %d captured rows; drift when p < %s and effect >= %s",
             report["verdict"], ", ".join(report["drifted_columns"]) or "no column drifted",
             len(current), config.monitor.drift.p_value, config.monitor.drift.min_effect)
    return MonitorResult(replay=sent, captured_rows=len(current), drift_report=str(json_path),
                         drift_html=str(html_path), drift_verdict=report["verdict"],
                         drifted_columns=report["drifted_columns"])
