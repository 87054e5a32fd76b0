"""Capture: each replica buffers the rows it scored and writes them as Parquet files.

What is captured is the request after the one row normalization, PII policy included
(hashed and generalized columns are never written raw), with the prediction, the time
and the request id. A replica's follower thread writes its buffer when it holds ``max_rows``
rows, when the oldest row is ``max_age_s`` old (a timer, not the next request), when the
control actor asks (``raymlops.serving.control``), and when the replica shuts down; a
write never happens on the request path.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pandas as pd

log = logging.getLogger("ray.serve")


class CaptureBuffer:
    """Buffers scored rows; writes them atomically under one folder per version."""

    def __init__(self, directory: Path | None, *, max_rows: int = 500,
                 max_age_s: float = 2.0) -> None:
        self.directory = directory
        self.max_rows, self.max_age_s = max_rows, max_age_s
        self._frames: list[pd.DataFrame] = []
        self._rows = 0
        self._since = time.monotonic()
        self._tag = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._seq = 0
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self.written = 0

    def add(self, frame: pd.DataFrame) -> None:
        """Buffer rows; the follower thread writes them (never the request path)."""
        if self.directory is None:
            return
        with self._lock:
            if not self._frames:
                self._since = time.monotonic()
            self._frames.append(frame)
            self._rows += len(frame)

    def due(self) -> bool:
        """Whether ``max_rows`` rows are buffered, or the oldest has waited ``max_age_s``."""
        with self._lock:
            return bool(self._frames) and (self._rows >= self.max_rows or
                                           time.monotonic() - self._since >= self.max_age_s)

    def flush(self) -> int:
        """Write what is buffered; returns the rows written so far. Thread-safe."""
        with self._write_lock:
            with self._lock:
                if self.directory is None or not self._frames:
                    return self.written
                frames, self._frames, self._rows = self._frames, [], 0
                self._seq += 1
                seq = self._seq
            frame = pd.concat(frames, ignore_index=True)
            self.directory.mkdir(parents=True, exist_ok=True)
            target = self.directory / f"{self._tag}-{seq:06d}.parquet"
            tmp = target.with_suffix(".tmp")
            frame.to_parquet(tmp, index=False)
            tmp.replace(target)
            self.written += len(frame)
            return self.written


class Follower:
    """A replica's background thread: the age timer, and the control actor's requests.

    ``poll(acked_epoch, written, generation)`` reports to the control actor and returns
    (the flush epoch it wants, the newest routing generation). When the epoch moves past
    the last one flushed, every buffer is flushed and the new epoch reported; when the
    generation moves past the one routed by, ``follow(generation)`` fetches the new
    routing state and returns the generation it now routes by.
    """

    def __init__(self, buffers: Callable[[], list[CaptureBuffer]],
                 poll: Callable[[int, int, int], tuple[int, int]] | None, *,
                 follow: Callable[[int], int] | None = None, generation: Callable[[], int]
                 | None = None, interval_s: float = 0.1) -> None:
        self.buffers = buffers
        self.poll = poll
        self.follow = follow
        self.generation = generation or (lambda: 0)
        self.interval_s = interval_s
        self.acked = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="raymlops-follower",
                                        daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.tick()
            except Exception as exc:  # noqa: BLE001 - a monitoring thread must not die
                log.warning("replica follower: %s: %s", type(exc).__name__, exc)

    def written(self) -> int:
        return sum(b.written for b in self.buffers())

    def flush(self) -> int:
        for buffer in self.buffers():
            buffer.flush()
        return self.written()

    def tick(self) -> None:
        for buffer in self.buffers():
            if buffer.due():
                buffer.flush()
        if self.poll is None:
            return
        wanted, newest = self.poll(self.acked, self.written(), self.generation())
        if self.follow is not None and newest > self.generation():
            self.follow(newest)
        if wanted > self.acked:
            written = self.flush()
            self.acked = wanted
            self.poll(self.acked, written, self.generation())

    def stop(self) -> int:
        """Stop the thread and write what is left (replica shutdown)."""
        self._stop.set()
        self._thread.join(timeout=5)
        return self.flush()
