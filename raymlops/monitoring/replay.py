"""Replay: send rows of a table through the live endpoint as real HTTP requests."""

from __future__ import annotations

import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import requests
from pydantic import BaseModel


class ReplayResult(BaseModel):
    requests: int
    ok: int
    errors: int
    versions: dict[str, int]
    p50_ms: float
    p99_ms: float
    seconds: float


def _row_payload(row: pd.Series) -> bytes:
    values = [None if isinstance(v, float) and np.isnan(v) else v for v in row.tolist()]
    return json.dumps({"dataframe_split": {"columns": list(row.index), "data": [values]}},
                      default=lambda v: v.item() if hasattr(v, "item") else str(v)).encode()


def replay(url: str, frame: pd.DataFrame, *, concurrency: int = 4,
           timeout_s: float = 30.0) -> ReplayResult:
    """One request per row, ``concurrency`` clients in a closed loop."""
    payloads = [_row_payload(row) for _, row in frame.iterrows()]
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=concurrency,
                                            pool_maxsize=concurrency)
    session.mount("http://", adapter)

    def send(body: bytes) -> tuple[int, str, float]:
        start = time.perf_counter()
        try:
            answer = session.post(url, data=body, timeout=timeout_s,
                                  headers={"Content-Type": "application/json"})
        except requests.RequestException:
            return 0, "", (time.perf_counter() - start) * 1000
        version = answer.headers.get("X-Model-Version", "")
        return answer.status_code, version, (time.perf_counter() - start) * 1000

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(send, payloads))
    elapsed = time.perf_counter() - started
    latencies = sorted(r[2] for r in results)
    versions: dict[str, int] = {}
    for status, version, _ in results:
        if status == 200:
            versions[version] = versions.get(version, 0) + 1
    ok = sum(1 for r in results if r[0] == 200)
    p99_index = max(0, int(np.ceil(0.99 * len(latencies))) - 1)
    return ReplayResult(requests=len(results), ok=ok, errors=len(results) - ok, versions=versions,
                        p50_ms=statistics.median(latencies) if latencies else 0.0,
                        p99_ms=latencies[p99_index] if latencies else 0.0, seconds=elapsed)


def summary(result: ReplayResult) -> dict[str, Any]:
    return result.model_dump()
