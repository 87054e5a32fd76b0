"""Each version has its own batching queue: a batch never scores another version's rows.

``@serve.batch`` keeps one queue per decorated function and runs a batch with its first
request's ``self`` (ray-project/ray#41380). The first test shows that trap with a
decorated method shared by two instances; the others show ``VersionSlot`` does not fall
into it, and that one bad request in a batch fails alone. No Ray cluster is started.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pandas as pd
import pytest
from ray import serve

from raymlops.features.normalize import Normalized, Problem
from raymlops.serving.protocol import Rows
from raymlops.serving.slot import Batching, Job, VersionSlot


@pytest.fixture(autouse=True)
def _outside_a_replica(monkeypatch):
    # serve.batch's queue asks the replica context for max_ongoing_requests, only to log
    # a sizing warning; outside a replica there is none
    from ray.serve import batching

    monkeypatch.setattr(batching._BatchQueue,
                        "_warn_if_max_batch_size_exceeds_max_ongoing_requests", lambda self: None)


class _Features:
    input_columns = ["x"]
    numeric = ["x"]

    def load_key(self) -> _Features:
        return self

    def normalize(self, frame: pd.DataFrame, *, raw: bool) -> Normalized:
        values = pd.to_numeric(frame["x"], errors="coerce")
        bad = values.isna().to_numpy()
        problems = [Problem("x", "not_a_number", bad)] if bad.any() else []
        return Normalized(pd.DataFrame({"x": values.fillna(0.0)}), problems)


class _Model:
    """Scores every row with its version's constant: a mixed-up batch shows at once."""

    threshold = 0.5

    def __init__(self, value: float) -> None:
        self.value = value
        self.features = _Features()
        self.calls: list[int] = []

    def predict_normalized(self, frame: pd.DataFrame) -> np.ndarray:
        self.calls.append(len(frame))
        return np.full(len(frame), self.value)

    def decide(self, scores: np.ndarray) -> np.ndarray:
        return (scores >= self.threshold).astype(int)


def _frame(x: object = 1.0) -> Rows:
    return Rows({"x": [x]}, 1)


def test_the_shared_method_way_mixes_versions():
    class Naive:
        def __init__(self, value: float) -> None:
            self.value = value

        @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.05)
        async def score(self, items: list[int]) -> list[float]:
            return [self.value] * len(items)

    async def run() -> list[tuple[float, float]]:
        a, b = Naive(0.1), Naive(0.9)
        calls = [(m.value, m.score(i)) for i in range(20) for m in (a, b)]
        answers = await asyncio.gather(*(c for _, c in calls))
        return [(want, got) for (want, _), got in zip(calls, answers, strict=True)]

    pairs = asyncio.run(run())
    # the trap this module guards against: some requests got the other instance's answer
    assert any(want != got for want, got in pairs)


def test_each_slot_scores_only_its_own_requests():
    models = {"1": _Model(0.1), "2": _Model(0.9)}
    slots = {}

    async def run() -> list[tuple[str, list[float] | None]]:
        for version, model in models.items():
            slots[version] = VersionSlot(version, model, capture_dir=None,
                                         batching=Batching(16, 0.05))
        order = [v for _ in range(30) for v in ("1", "2")]
        answers = await asyncio.gather(*(slots[v].submit(Job(_frame())) for v in order))
        return [(v, a.scores) for v, a in zip(order, answers, strict=True)]

    for version, scores in asyncio.run(run()):
        assert scores == [models[version].value]
    assert max(models["1"].calls) > 1  # requests really were batched


def test_a_bad_request_fails_alone_in_its_batch():
    model = _Model(0.7)

    async def run() -> list:
        slot = VersionSlot("3", model, capture_dir=None, batching=Batching(8, 0.05))
        jobs = [Job(_frame(1.0)), Job(_frame("abc")), Job(_frame(2.0), output="decision"),
                Job(Rows({"y": [1]}, 1))]
        return list(await asyncio.gather(*(slot.submit(j) for j in jobs)))

    ok, bad, decided, missing = asyncio.run(run())
    assert ok.scores == [0.7] and ok.error is None
    assert bad.error is not None and bad.error.field == "x" and bad.error.row == 0
    assert decided.decisions == [1]
    assert missing.error is not None and missing.error.field == "x"
    assert model.calls == [2]  # one model call for the two good requests
