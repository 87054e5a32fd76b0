"""The usage meter's memory reading, on the session's real Ray: the dashboard's node
summary gives the same number as Ray's own ``ray_node_mem_used`` gauge (with one node
here: the filter and the sum over nodes are unit-tested)."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.integration


def test_node_memory_is_what_ray_exports_as_node_mem_used(ray_session):
    from raymlops._internal.usage import _memory_from_metrics, _memory_from_summary

    deadline, seen = time.monotonic() + 60, []
    while time.monotonic() < deadline:
        ours, gauge = _memory_from_summary(), _memory_from_metrics()  # the gauge
        seen.append((ours, gauge))
        # both come from the node reporter's same reading (every 5 s); a report landing
        # between the two reads moves one of them, so some pair of reads must agree
        if ours > 0 and gauge > 0 and abs(ours - gauge) <= 0.01 * gauge:
            return
        time.sleep(2)
    raise AssertionError(f"the summary's memory and ray_node_mem_used disagree: {seen}")
