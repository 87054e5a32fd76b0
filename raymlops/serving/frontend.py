"""The HTTP API of a served model, for both serving shapes: routes, protocols, routing.

The co-located server and the separate shape's ingress both answer through
``Frontend.handle``; they differ only in the ``Backend`` that scores (an in-process
version slot, or a handle to the version's own deployment).

Paths are answered under the application's prefix (``/<app>/...``) and, for the
application that holds Serve's root route, at the standard paths too:
- MLflow scoring: ``POST /invocations``, ``GET /ping``, ``/health``, ``/version``;
- Open Inference Protocol v2: ``/v2``, ``/v2/health/live|ready``,
  ``/v2/models/<app>[/versions/<v>]``, ``.../ready``, ``.../config``, ``.../infer``;
- ``GET /openapi.json``.

Every answer carries ``X-Request-Id``; every scored one ``X-Model-Version`` (and the
version's ``X-Decision-Threshold``). Client errors are 4xx naming the field, in
MLflow's shape (``error_code``, ``message``, ``field``) or KServe's (``{"error"}``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import zlib
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from raymlops.serving import oip
from raymlops.serving.protocol import BadRequest, Rows, parse_rows
from raymlops.serving.routing import RoutingTable
from raymlops.serving.slot import Job, Scored

log = logging.getLogger("ray.serve")

VERSION_HEADER = "X-Model-Version"
THRESHOLD_HEADER = "X-Decision-Threshold"
REQUEST_ID_HEADER = "X-Request-Id"
OVERRIDE_HEADER = "x-raymlops-version"
#: shadow copies scored at once per replica; past it a copy is dropped (and counted),
#: so that a slow shadow cannot pile work onto the replica the primary answers from
MAX_MIRRORS = 32


class Backend(Protocol):
    """What scores for a frontend: the versions it holds and how to reach them."""

    def table(self) -> RoutingTable: ...
    def ready(self) -> bool: ...
    async def describe(self, version: str) -> dict[str, Any]: ...
    async def score(self, version: str, job: Job) -> Scored: ...


@dataclass(frozen=True)
class FrontendSettings:
    app: str
    max_body_bytes: int = 8 * 1024 * 1024
    allow_override: bool = False
    sticky_header: str = "x-routing-key"
    sticky_field: str | None = None
    #: the application's own route prefix (default /<app>; /<project>/<model> for a tenant)
    prefix: str | None = None


class Frontend:
    def __init__(self, settings: FrontendSettings, backend: Backend, metrics: Any = None
                 ) -> None:
        self.settings = settings
        self.app = settings.app
        self.prefix = settings.prefix or f"/{settings.app}"
        self.backend = backend
        self.metrics = metrics
        self._background: set[asyncio.Task[Any]] = set()
        self.mirrors_dropped = 0

    async def handle(self, request: Request) -> Response:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        started = time.perf_counter()
        path = self._relative(request.url.path)
        oip_path = path == "/v2" or path.startswith("/v2/")
        try:
            response, version = await self._dispatch(request, path, request_id)
        except BadRequest as err:
            body = oip.error(err) if oip_path else err.to_json()
            response, version = JSONResponse(body, status_code=err.status), ""
        except Exception:
            log.exception("%s: request %s failed unexpectedly", self.app, request_id)
            message = f"unexpected server error; request id {request_id}"
            body = {"error": message} if oip_path else {
                "error_code": "INTERNAL_ERROR", "field": "server", "message": message}
            response, version = JSONResponse(body, status_code=500), ""
        response.headers[REQUEST_ID_HEADER] = request_id
        if self.metrics is not None and request.method == "POST":
            self.metrics.request(version or "none", "v2" if oip_path else "mlflow",
                                 response.status_code, time.perf_counter() - started)
        return response

    def _relative(self, path: str) -> str:
        prefix = self.prefix
        if path == prefix or path.startswith(prefix + "/"):
            path = path[len(prefix):]
        return path.rstrip("/") or "/"

    async def _dispatch(self, request: Request, path: str,
                        request_id: str) -> tuple[Response, str]:
        method = request.method
        if path == "/v2" or path.startswith("/v2/"):
            return await self._open_inference(request, path, request_id)
        if path == "/invocations":
            _method(method, "POST")
            return await self._invocations(request, request_id)
        if path in ("/ping", "/health", "/"):
            _method(method, "GET")
            table = self.backend.table()
            return JSONResponse({"status": "ok", "model": self.app,
                                 "weights": table.weights,
                                 "shadows": dict(table.state.shadows)}), ""
        if path == "/version":
            import mlflow

            _method(method, "GET")
            return PlainTextResponse(mlflow.__version__), ""
        if path == "/openapi.json":
            from raymlops.serving.openapi import document

            _method(method, "GET")
            return JSONResponse(document(self.app, await self.backend.describe(
                self._primary()), sticky_header=self.settings.sticky_header,
                versions=list(self.backend.table().state.versions), prefix=self.prefix)), ""
        raise BadRequest("path", f"no route {request.url.path}; POST {self.prefix}/invocations "
                         f"or {self.prefix}/v2/models/{self.app}/infer (see "
                         f"{self.prefix}/openapi.json)",
                         status=404)

    def _primary(self) -> str:
        return self.backend.table().primary

    async def _body(self, request: Request) -> bytes:
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise _too_large(int(declared), limit)
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(size, limit)
            chunks.append(chunk)
        body = b"".join(chunks)
        encoding = (request.headers.get("content-encoding") or "identity").lower()
        if encoding in ("gzip", "deflate"):
            try:
                inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
                body = inflater.decompress(body, limit + 1)
            except zlib.error as exc:
                raise BadRequest("content-encoding", f"not valid {encoding}: {exc}") from None
            if len(body) > limit:
                raise _too_large(len(body), limit)
        elif encoding != "identity":
            raise BadRequest("content-encoding", f"unsupported content encoding {encoding!r};"
                             " use gzip, deflate or none", status=415)
        return body

    def _route(self, request: Request, frame: Rows | None, pinned: str | None = None) -> str:
        table = self.backend.table()
        pinned = pinned or request.headers.get(OVERRIDE_HEADER) or None
        if pinned is not None:
            field = OVERRIDE_HEADER if request.headers.get(OVERRIDE_HEADER) else "version"
            if not self.settings.allow_override:
                raise BadRequest(field, "choosing a version is not allowed for this model "
                                 "(deploy.routing.allow_override)", status=403)
            if pinned not in table.state.versions:
                raise BadRequest(field, f"version {pinned!r} is not live; live: "
                                 f"{', '.join(table.state.versions)}")
            return pinned
        key = request.headers.get(self.settings.sticky_header)
        sticky = self.settings.sticky_field
        if not key and sticky and frame is not None and sticky in frame.columns and \
                frame.count:
            value = frame.columns[sticky][0]
            key = None if value is None else str(value)
        return table.choose(key or None)

    async def _score(self, version: str, frame: Rows, output: str,
                     request_id: str) -> Scored:
        result = await self.backend.score(version, Job(frame, output, request_id))
        if result.error is None:
            for shadow in self.backend.table().mirrors():
                if len(self._background) >= MAX_MIRRORS:
                    self.mirrors_dropped += 1
                    if self.metrics is not None:
                        self.metrics.shadow_dropped(shadow)
                    continue
                task = asyncio.get_running_loop().create_task(
                    self._mirror(shadow, frame, request_id, result))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
        return result

    async def _mirror(self, shadow: str, frame: Rows, request_id: str, primary: Scored
                      ) -> None:
        """A shadow scores a copy after the primary answered; never fails the primary."""
        import numpy as np

        try:
            copy = await self.backend.score(shadow, Job(frame, "score", request_id))
            if copy.error is not None or copy.scores is None or primary.scores is None:
                return
            mine, theirs = np.asarray(copy.scores), np.asarray(primary.scores)
            differing = 0
            if copy.decisions is not None and primary.decisions is not None:
                differing = int(np.sum(np.asarray(copy.decisions) !=
                                       np.asarray(primary.decisions)))
            if self.metrics is not None:
                self.metrics.shadow(shadow, primary.version, len(mine), differing,
                                    np.abs(mine - theirs))
        except Exception as exc:  # noqa: BLE001 - a shadow's failure is only logged
            log.warning("%s: shadow version %s failed on request %s: %s", self.app, shadow,
                        request_id, exc)

    def _headers(self, result: Scored) -> dict[str, str]:
        headers = {VERSION_HEADER: result.version, "X-Model-Name": self.app}
        if result.threshold is not None:
            headers[THRESHOLD_HEADER] = f"{result.threshold:.6g}"
        return headers

    def _early(self, request: Request, pinned: str | None = None) -> str | None:
        """The version, chosen before the body is parsed (so that positional rows follow
        its own inputs), unless the sticky key is a body field."""
        if self.settings.sticky_field and not request.headers.get(self.settings.sticky_header):
            return None
        return self._route(request, None, pinned)

    async def _invocations(self, request: Request, request_id: str) -> tuple[Response, str]:
        body = await self._body(request)
        early = self._early(request)
        columns = (await self.backend.describe(early or self._primary()))["columns"]
        frame, output = parse_rows(body, request.headers.get("content-type"), columns)
        version = early or self._route(request, frame)
        result = await self._score(version, frame, output, request_id)
        headers = self._headers(result)
        if result.error is not None:
            return JSONResponse(result.error.to_json(), status_code=result.error.status,
                                headers=headers), version
        answer = result.decisions if output == "decision" else result.scores
        return JSONResponse({"predictions": answer}, headers=headers), version

    async def _open_inference(self, request: Request, path: str,  # noqa: PLR0911
                              request_id: str) -> tuple[Response, str]:
        from raymlops import __version__

        if path == "/v2":
            return JSONResponse({"name": "raymlops", "version": __version__, "extensions": [
                "binary_tensor_data", "model_configuration"]}), ""
        if path == "/v2/health/live":
            return JSONResponse({"live": True}), ""
        if path == "/v2/health/ready":
            ready = self.backend.ready()
            return JSONResponse({"ready": ready}, status_code=200 if ready else 503), ""
        parts = path.split("/")[3:]  # after /v2/models
        if not path.startswith("/v2/models/") or not parts:
            raise BadRequest("path", f"no route {path}", status=404)
        self.backend.table()  # 503 while this replica has no routing state
        if parts[0] != self.app:
            raise BadRequest("model", f"model {parts[0]!r} is not served here; this "
                             f"application serves {self.app!r}", status=404)
        pinned = None
        if len(parts) >= 3 and parts[1] == "versions":
            pinned, parts = parts[2], [parts[0], *parts[3:]]
        action = parts[1] if len(parts) > 1 else ""
        if len(parts) > 2 or action not in ("", "ready", "config", "infer"):
            raise BadRequest("path", f"no route {path}", status=404)
        if action == "infer":
            _method(request.method, "POST")
            return await self._infer(request, request_id, pinned)
        _method(request.method, "GET")
        table = self.backend.table()
        if pinned and pinned not in table.state.versions:
            raise BadRequest("version", f"version {pinned!r} is not live", status=404)
        described = await self.backend.describe(pinned or self._primary())
        if action == "ready":
            ready = self.backend.ready()
            return JSONResponse({"name": self.app, "ready": ready},
                                status_code=200 if ready else 503), ""
        columns, numeric = described["columns"], set(described["numeric"])
        if action == "config":
            return JSONResponse(oip.model_config(self.app, columns, numeric)), ""
        return JSONResponse(oip.model_metadata(self.app, list(table.state.versions), columns,
                                               numeric)), ""

    async def _infer(self, request: Request, request_id: str,
                     pinned: str | None) -> tuple[Response, str]:
        body = await self._body(request)
        early = self._early(request, pinned)
        columns = (await self.backend.describe(early or self._primary()))["columns"]
        frame, payload = oip.parse_infer_rows(body, columns,
                                              request.headers.get(oip.HEADER_LENGTH))
        outputs, output = oip.requested(payload)
        version = early or self._route(request, frame, pinned)
        result = await self._score(version, frame, output, request_id)
        headers = self._headers(result)
        if result.error is not None:
            return JSONResponse(oip.error(result.error), status_code=result.error.status,
                                headers=headers), version
        reply_id = str(payload["id"]) if isinstance(payload.get("id"), str) else request_id
        content, head = oip.infer_response(self.app, version, reply_id, result.scores or [],
                                           decisions=result.decisions, outputs=outputs)
        if head is None:
            return Response(content, media_type="application/json", headers=headers), version
        headers["Inference-Header-Content-Length"] = str(head)
        return Response(content, media_type="application/octet-stream",
                        headers=headers), version


def _method(method: str, allowed: str) -> None:
    if method != allowed:
        raise BadRequest("method", f"use {allowed}", status=405)


def _too_large(size: int, limit: int) -> BadRequest:
    return BadRequest("body", f"the request body of {size} bytes exceeds the limit of {limit} "
                      "(deploy.max_body_bytes)", status=413)
