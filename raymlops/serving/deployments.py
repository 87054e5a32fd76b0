"""Ray Serve deployments: an ingress router in front of one deployment per model version.

The router parses the MLflow scoring protocol, picks a version with ``TrafficPolicy``
(weights come from ``user_config``, so ``reconfigure`` changes them without a
restart) and answers with an ``X-Model-Version`` header. A version deployment loads
its model from the MLflow registry, checks the input columns, predicts, and captures
the rows it scored for drift monitoring. Client errors become 4xx JSON naming the
field; a replica never crashes on input.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

from raymlops.serving.protocol import BadRequest, coerce_inputs, parse_body
from raymlops.serving.routing import TrafficPolicy

log = logging.getLogger("ray.serve")

VERSION_HEADER = "X-Model-Version"
ROUTING_KEY_HEADER = "x-routing-key"
PREDICTION = "_prediction"


def _error(err: BadRequest, version: str | None = None) -> JSONResponse:
    headers = {VERSION_HEADER: version} if version else None
    return JSONResponse(err.to_json(), status_code=err.status, headers=headers)


class CaptureBuffer:
    """Buffers scored rows and writes them as Parquet files, one folder per version."""

    def __init__(self, directory: Path | None, *, max_rows: int = 500, max_age_s: float = 2.0):
        self.directory = directory
        self.max_rows, self.max_age_s = max_rows, max_age_s
        self._frames: list[pd.DataFrame] = []
        self._rows = 0
        self._since = time.monotonic()
        self._tag = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._seq = 0
        self._lock = threading.Lock()
        self.written = 0

    def add(self, frame: pd.DataFrame) -> None:
        if self.directory is None:
            return
        with self._lock:
            if not self._frames:
                self._since = time.monotonic()
            self._frames.append(frame)
            self._rows += len(frame)
            due = self._rows >= self.max_rows or time.monotonic() - self._since >= self.max_age_s
        if due:
            self.flush()

    def flush(self) -> int:
        """Write what is buffered; safe to call from Serve's concurrent request threads."""
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
        with self._lock:
            self.written += len(frame)
            return self.written


@serve.deployment
class ModelVersion:
    def __init__(self, model_name: str, version: str, model_uri: str, tracking_uri: str,
                 capture_dir: str | None) -> None:
        import mlflow

        mlflow.set_tracking_uri(tracking_uri)
        self.model_name, self.version = model_name, version
        self.model = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
        features = self.model.features
        self.numeric, self.categorical = list(features.numeric), list(features.categorical)
        self.capture = CaptureBuffer(Path(capture_dir) if capture_dir else None)

    def input_columns(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def predict(self, frame: pd.DataFrame) -> dict[str, Any]:
        try:
            inputs = coerce_inputs(frame, self.numeric, self.categorical)
        except BadRequest as err:
            return {"error": err.to_json(), "status": err.status, "version": self.version}
        predictions = self.model.predict_frame(inputs)
        captured = inputs.copy()
        captured[PREDICTION] = predictions
        captured["_ts"] = time.time()
        self.capture.add(captured)
        return {"predictions": predictions.tolist(), "version": self.version}

    def features(self, frame: pd.DataFrame) -> list[list[float]]:
        """The feature vectors this replica feeds its model (for train/serve skew checks)."""
        inputs = coerce_inputs(frame, self.numeric, self.categorical)
        return self.model.features.transform(inputs).tolist()

    def flush(self) -> int:
        return self.capture.flush()


@serve.deployment
class Router:
    def __init__(self, model_name: str, variants: dict[str, Any],
                 input_columns: list[str]) -> None:
        self.model_name = model_name
        self.variants = variants
        self.columns = input_columns
        self.policy = TrafficPolicy(dict.fromkeys(variants, 1.0))

    def reconfigure(self, config: dict[str, Any]) -> None:
        weights = {str(k): float(v) for k, v in config.get("weights", {}).items()}
        unknown = set(weights) - set(self.variants)
        if unknown:
            raise ValueError(f"weights name versions that are not deployed: {sorted(unknown)}")
        self.policy = TrafficPolicy(weights)
        log.info("router %s: traffic weights now %s", self.model_name, self.policy.weights)

    def weights(self) -> dict[str, float]:
        return dict(self.policy.weights)

    async def __call__(self, request: Request) -> JSONResponse:
        path = request.url.path.rstrip("/")
        if request.method == "GET" and path.endswith(("/health", f"/{self.model_name}")):
            return JSONResponse({"model": self.model_name, "weights": self.policy.weights})
        if not path.endswith("/invocations"):
            message = f"no route {path}; POST /{self.model_name}/invocations"
            return JSONResponse({"error_code": "NOT_FOUND", "field": "path", "message": message},
                                status_code=404)
        if request.method != "POST":
            return JSONResponse({"error_code": "METHOD_NOT_ALLOWED", "field": "method",
                                 "message": "use POST"}, status_code=405)
        try:
            frame = parse_body(await request.body(), request.headers.get("content-type"),
                               self.columns)
        except BadRequest as err:
            return _error(err)
        version = self.policy.choose(request.headers.get(ROUTING_KEY_HEADER))
        result = await self.variants[version].predict.remote(frame)
        headers = {VERSION_HEADER: result["version"], "X-Model-Name": self.model_name}
        if "error" in result:
            return JSONResponse(result["error"], status_code=result["status"], headers=headers)
        return JSONResponse({"predictions": result["predictions"]}, headers=headers)
