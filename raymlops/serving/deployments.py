"""Ray Serve deployments: an ingress router in front of one deployment per model version.

The router parses the MLflow scoring protocol, picks a version with ``TrafficPolicy``
(weights come from ``user_config``, so ``reconfigure`` changes them without a
restart) and answers with an ``X-Model-Version`` header and an ``X-Request-Id``. A
version deployment loads its model from the MLflow registry, normalizes the request
with the model's own row normalization (PII policy included), predicts, and captures
what it scored. Client errors become 4xx JSON naming the field; any unexpected error
becomes a JSON 500 with the request id, logged; a replica never crashes on input.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

from raymlops.names import CAPTURED_AT, PREDICTION, REQUEST_ID
from raymlops.serving.capture import CaptureBuffer, Follower
from raymlops.serving.protocol import BadRequest, parse_request, raise_problems, require_columns
from raymlops.serving.routing import TrafficPolicy

log = logging.getLogger("ray.serve")

VERSION_HEADER = "X-Model-Version"
#: the answering version's decision threshold (chosen on its validation split)
THRESHOLD_HEADER = "X-Decision-Threshold"
REQUEST_ID_HEADER = "X-Request-Id"
ROUTING_KEY_HEADER = "x-routing-key"


def _replica_id(deployment: str) -> str:
    """``<deployment>#<replica id>``: how the control actor tells replicas apart."""
    try:
        unique = str(serve.get_replica_context().replica_id.unique_id)
    except Exception:  # noqa: BLE001 - outside Serve (unit tests)
        unique = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
    return f"{deployment}#{unique}"


@serve.deployment
class ModelVersion:
    def __init__(self, model_name: str, version: str, model_uri: str, tracking_uri: str,  # noqa: PLR0917
                 capture_dir: str | None, capture: dict[str, float] | None = None,
                 app: str | None = None) -> None:
        import mlflow

        mlflow.set_tracking_uri(tracking_uri)
        self.model_name, self.version = model_name, version
        self.model = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
        self.features = self.model.features.load_key()  # hashed PII inputs need their key
        self.columns = self.features.input_columns
        self.started = (os.getpid(), time.time())
        settings = capture or {}
        self.capture = CaptureBuffer(Path(capture_dir) if capture_dir else None,
                                     max_rows=int(settings.get("max_rows", 500)),
                                     max_age_s=float(settings.get("max_age_s", 2.0)))
        self.replica = _replica_id(f"{app or model_name}-v{version}")
        poll = None
        if app is not None:
            from raymlops.serving.control import get_or_create

            # made here too: an application applied from an exported config on a fresh
            # cluster has no driver that made it first
            control = get_or_create(app)

            def poll(acked: int, written: int) -> int:
                import ray

                return int(ray.get(control.poll.remote(self.replica, acked, written),
                                   timeout=5))
        self.follower = Follower(self.capture, poll)

    def identity(self) -> dict[str, Any]:
        """Process id and start time: a redeploy that kept this replica keeps them."""
        return {"pid": self.started[0], "started": self.started[1], "replica": self.replica}

    def predict(self, frame: pd.DataFrame, request_id: str = "",
                output: str = "score") -> dict[str, Any]:
        try:
            if output == "decision" and getattr(self.model, "threshold", None) is None:
                raise BadRequest("params.output", "this model has no decision threshold "
                                 "(a regression model): ask for scores")
            require_columns(frame, self.columns)
            normalized = self.features.normalize(frame, raw=True)
            raise_problems(normalized, frame)
        except BadRequest as err:
            return {"error": err.to_json(), "status": err.status, "version": self.version}
        predictions = self.model.predict_normalized(normalized.frame)
        captured = normalized.frame.copy()
        captured[PREDICTION] = predictions
        captured[CAPTURED_AT] = time.time()
        captured[REQUEST_ID] = request_id
        self.capture.add(captured)
        threshold = getattr(self.model, "threshold", None)
        answer = self.model.decide(predictions) if output == "decision" else predictions
        return {"predictions": np.asarray(answer).tolist(), "version": self.version,
                "threshold": threshold}

    def features_of(self, frame: pd.DataFrame) -> list[list[float]]:
        """The feature vectors this replica feeds its model (for train/serve skew checks)."""
        return self.features.transform(frame, raw=True).tolist()

    def flush(self) -> int:
        return self.capture.flush()

    def __del__(self) -> None:
        follower = getattr(self, "follower", None)
        if follower is not None:
            written = follower.stop()
            log.info("replica %s of %s v%s: capture flushed on shutdown (%d rows written)",
                     getattr(self, "replica", "?"), self.model_name, self.version, written)


def _json(payload: dict[str, Any], status: int, request_id: str,
          headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(payload, status_code=status,
                        headers={REQUEST_ID_HEADER: request_id, **(headers or {})})


@serve.deployment
class Router:
    def __init__(self, model_name: str, variants: dict[str, Any], input_columns: list[str],
                 numeric: list[str] | None = None) -> None:
        self.model_name = model_name
        self.variants = variants
        self.columns = input_columns
        self.numeric = set(numeric or [])
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
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        try:
            return await self._handle(request, request_id)
        except BadRequest as err:
            return _json(err.to_json(), err.status, request_id)
        except Exception:
            log.exception("router %s: request %s failed unexpectedly", self.model_name,
                          request_id)
            return _json({"error_code": "INTERNAL_ERROR", "field": "server",
                          "message": f"unexpected server error; request id {request_id}",
                          "request_id": request_id}, 500, request_id)

    async def _handle(self, request: Request, request_id: str) -> JSONResponse:
        path = request.url.path.rstrip("/")
        if "/v2/" in path + "/":
            return await self._open_inference(request, path, request_id)
        if request.method == "GET" and path.endswith(("/health", f"/{self.model_name}")):
            return _json({"model": self.model_name, "weights": self.policy.weights}, 200,
                         request_id)
        if not path.endswith("/invocations"):
            raise BadRequest("path", f"no route {path}; POST /{self.model_name}/invocations",
                             status=404)
        if request.method != "POST":
            raise BadRequest("method", "use POST", status=405)
        body, content_type = await request.body(), request.headers.get("content-type")
        frame, output = parse_request(body, content_type, self.columns)
        version = self.policy.choose(request.headers.get(ROUTING_KEY_HEADER))
        result = await self.variants[version].predict.remote(frame, request_id, output)
        headers = {VERSION_HEADER: result["version"], "X-Model-Name": self.model_name}
        if result.get("threshold") is not None:  # the version's own decision threshold
            headers[THRESHOLD_HEADER] = f"{result['threshold']:.6g}"
        if "error" in result:
            return _json(result["error"], result["status"], request_id, headers)
        return _json({"predictions": result["predictions"]}, 200, request_id, headers)

    async def _open_inference(self, request: Request, path: str,  # noqa: PLR0911 - a route each
                              request_id: str) -> JSONResponse:
        """KServe v2 (JSON) under this model's route: health, metadata, ready, infer."""
        from raymlops.serving import oip

        tail = path.split("/v2", 1)[1] or "/"
        name = self.model_name
        if tail in ("/health/live", "/health/ready"):
            return _json({tail.rsplit("/", 1)[1]: True}, 200, request_id)
        prefix = f"/models/{name}"
        if not tail.startswith(prefix) or tail[len(prefix):] not in ("", "/ready", "/infer"):
            return _json({"error": f"no route {path}; this server serves model {name!r} at "
                          f".../v2/models/{name}/infer"}, 404, request_id)
        rest = tail[len(prefix):]
        if rest == "":
            return _json({"name": name, "versions": sorted(self.variants), "platform":
                          "raymlops", "inputs": [{"name": c, "shape": [-1], "datatype":
                                                  "FP64" if c in self.numeric else "BYTES"}
                                                 for c in self.columns],
                          "outputs": [{"name": "predictions", "shape": [-1],
                                       "datatype": "FP64"}]}, 200, request_id)
        if rest == "/ready":
            return _json({"name": name, "ready": True}, 200, request_id)
        if request.method != "POST":
            return _json({"error": "infer takes POST"}, 405, request_id)
        try:
            frame, _ = oip.parse_infer(await request.body(), self.columns)
        except BadRequest as bad:
            return _json(oip.error(bad), bad.status, request_id)
        version = self.policy.choose(request.headers.get(ROUTING_KEY_HEADER))
        result = await self.variants[version].predict.remote(frame, request_id)
        headers = {VERSION_HEADER: result["version"], "X-Model-Name": name}
        if "error" in result:
            failed = BadRequest(result["error"]["field"], result["error"]["message"],
                                result["status"])
            return _json(oip.error(failed), result["status"], request_id, headers)
        return _json(oip.infer_response(name, result["version"], request_id,
                                        result["predictions"]), 200, request_id, headers)
