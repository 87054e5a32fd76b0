"""One loaded model version inside a replica, with its own batching queue.

``@serve.batch`` keeps one queue per decorated function, shared by every instance of a
class, and runs each batch with the first request's ``self`` (ray-project/ray#41380).
Two versions held as two instances of one class with a decorated method would score
each other's requests with the wrong weights. So each slot decorates a closure of its
own: one queue per version, and a batch only ever holds that version's requests
(``tests/unit/test_slot.py`` shows the shared-method way mixing them, and this not).

A batch is scored at once: the rows of every request in it go through the model's one
row normalization (PII policy included) and one model call; a request whose rows cannot
be normalized gets its own 400 naming the field, and the others in the batch are
answered. What was scored is captured (normalized, PII-protected) per version.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from raymlops.names import CAPTURED_AT, PREDICTION, REQUEST_ID
from raymlops.serving.capture import CaptureBuffer
from raymlops.serving.protocol import BadRequest, Rows, require_columns


@dataclass
class Job:
    frame: Rows
    output: str = "score"
    request_id: str = ""
    capture: bool = True


@dataclass
class Scored:
    version: str
    scores: list[float] | None = None
    decisions: list[int] | None = None
    threshold: float | None = None
    error: BadRequest | None = None


@dataclass(frozen=True)
class Batching:
    max_batch_size: int = 16
    batch_wait_timeout_s: float = 0.002


def load_model(uri: str, tracking_uri: str) -> Any:
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    return mlflow.pyfunc.load_model(uri).unwrap_python_model()


class VersionSlot:
    """A model version ready to score: model, features (PII key loaded), capture, queue."""

    def __init__(self, version: str, model: Any, *, capture_dir: Path | None,
                 capture: dict[str, float] | None = None, batching: Batching | None = None,
                 metrics: Any = None) -> None:
        from ray import serve

        self.version = version
        self.model = model
        self.features = model.features.load_key()  # hashed PII inputs need their key
        self.columns: list[str] = list(self.features.input_columns)
        self.numeric: set[str] = set(self.features.numeric)
        self.threshold: float | None = getattr(model, "threshold", None)
        settings = capture or {}
        self.capture = CaptureBuffer(capture_dir, max_rows=int(settings.get("max_rows", 500)),
                                     max_age_s=float(settings.get("max_age_s", 2.0)))
        self.metrics = metrics
        batching = batching or Batching()

        async def run(jobs: list[Job]) -> list[Scored]:
            return self.score_batch(jobs)

        # this slot's own queue (see the module docstring); never a decorated method
        self.submit = serve.batch(max_batch_size=batching.max_batch_size,
                                  batch_wait_timeout_s=batching.batch_wait_timeout_s)(run)

    def _check(self, job: Job) -> BadRequest | None:
        try:
            if job.output == "decision" and self.threshold is None:
                raise BadRequest("params.output", "this model has no decision threshold "
                                 "(a regression model): ask for scores")
            require_columns(job.frame, self.columns)
        except BadRequest as err:
            return err
        return None

    def score_batch(self, jobs: list[Job]) -> list[Scored]:
        """Every job's answer, in order; one normalization and one model call for all."""
        results: list[Scored | None] = [None] * len(jobs)
        good: list[int] = []
        for i, job in enumerate(jobs):
            failed = self._check(job)
            if failed is None:
                good.append(i)
            else:
                results[i] = Scored(self.version, threshold=self.threshold, error=failed)
        if good:
            self._score(jobs, good, results)
        return [r if r is not None else Scored(self.version) for r in results]

    def _score(self, jobs: list[Job], good: list[int], results: list[Scored | None]) -> None:
        parts = [jobs[i].frame for i in good]
        sizes = np.array([p.count for p in parts])
        starts = np.concatenate([[0], np.cumsum(sizes)])
        rows = Rows.concat(parts, self.columns)  # one frame for the whole batch
        normalized = self.features.normalize(rows, raw=True)
        keep = np.ones(len(rows), dtype=bool)
        if normalized.problems:
            bad = np.zeros(len(rows), dtype=bool)
            for problem in normalized.problems:
                bad |= problem.mask
            for j, i in enumerate(good):
                lo, hi = int(starts[j]), int(starts[j + 1])
                if bad[lo:hi].any():
                    keep[lo:hi] = False
                    part = rows.iloc[lo:hi].reset_index(drop=True)
                    results[i] = Scored(self.version, threshold=self.threshold,
                                        error=_first_problem(normalized.problems, lo, hi, part))
            if not keep.any():
                return
        inputs = normalized.frame if keep.all() else normalized.frame[keep]
        scores = np.asarray(self.model.predict_normalized(inputs), dtype=np.float64)
        decisions = None if self.threshold is None else \
            np.asarray(self.model.decide(scores)).astype(int)
        if self.metrics is not None:
            self.metrics.scored(self.version, scores, len(good))
        at = 0
        captured: list[int] = []  # positions (in the scored rows) of the rows to capture
        ids: list[str] = []  # the request id of every scored row
        for j, i in enumerate(good):
            if results[i] is not None:
                continue
            n = int(sizes[j])
            results[i] = Scored(self.version, scores=scores[at:at + n].tolist(),
                                threshold=self.threshold, decisions=None if decisions is None
                                else decisions[at:at + n].tolist())
            ids.extend([jobs[i].request_id] * n)
            if jobs[i].capture:
                captured.extend(range(at, at + n))
            at += n
        if captured and self.capture.directory is not None:
            self._capture(inputs, scores, captured, ids)

    def _capture(self, inputs: pd.DataFrame, scores: np.ndarray, at: list[int],
                 ids: list[str]) -> None:
        """The batch's scored rows, in one frame (normalized, PII-protected)."""
        whole = len(at) == len(inputs)
        frame = (inputs if whole else inputs.iloc[at]).reset_index(drop=True)
        frame[PREDICTION] = scores if whole else scores[at]
        frame[CAPTURED_AT] = time.time()
        frame[REQUEST_ID] = ids if whole else [ids[k] for k in at]
        self.capture.add(frame)

    def describe(self) -> dict[str, Any]:
        return {"version": self.version, "columns": self.columns,
                "numeric": sorted(self.numeric), "threshold": self.threshold}


def _first_problem(problems: list[Any], lo: int, hi: int, frame: pd.DataFrame) -> BadRequest:
    from raymlops.features.normalize import Problem

    mine = [Problem(p.column, p.kind, p.mask[lo:hi]) for p in problems if p.mask[lo:hi].any()]
    first = min(mine, key=lambda p: (p.first_row(), p.column))
    row = first.first_row()
    return BadRequest(first.column, f"{first.message(frame)} (row {row})", row=row)
