"""Per-version serving metrics, through Ray's own metrics export (``ray.util.metrics``).

Every replica records into Ray's metrics agent on its node; the agent serves them all,
in Prometheus exposition, on the node's metrics export port (``ray_`` is prepended to
each name). One scrape per node therefore covers every replica there, and Ray writes a
Prometheus file-based service-discovery list of all nodes to
``/tmp/ray/prom_metrics_service_discovery.json``. Ray adds labels of its own (its
``Version``, ``WorkerId``, ...), so the model version is ``model_version``. A series is
per replica process (``WorkerId``): sum over it for a version's totals.
"""

from __future__ import annotations

from typing import Any

LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]
SCORE_BUCKETS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
BATCH_BUCKETS = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]
DIFF_BUCKETS = [0.001, 0.01, 0.05, 0.1, 0.2, 0.5, 1.0]
TAGS = ("app", "model_version")

#: name -> (kind, description, extra tag keys, histogram boundaries)
DEFINITIONS: dict[str, tuple[str, str, tuple[str, ...], list[float] | None]] = {
    "raymlops_requests_total": ("counter", "Scoring requests answered, by protocol and "
                                "status class (2xx, 4xx, 5xx).", ("protocol", "code"), None),
    "raymlops_request_errors_total": ("counter", "Scoring requests that failed, by error "
                                      "class (bad_request, too_large, internal).",
                                      ("error",), None),
    "raymlops_request_duration_seconds": ("histogram", "Time from a request's arrival to its "
                                          "answer, in seconds.", (), LATENCY_BUCKETS),
    "raymlops_rows_total": ("counter", "Rows scored.", (), None),
    "raymlops_prediction": ("histogram", "Distribution of the scores returned (per row).",
                            (), SCORE_BUCKETS),
    "raymlops_batch_size": ("histogram", "Requests per model call (@serve.batch batches).",
                            (), BATCH_BUCKETS),
    "raymlops_shadow_rows_total": ("counter", "Rows a shadow version scored beside the "
                                   "primary.", ("primary",), None),
    "raymlops_shadow_decisions_differing_total": ("counter", "Shadow rows whose decision "
                                                  "differs from the primary's.", ("primary",),
                                                  None),
    "raymlops_shadow_score_difference": ("histogram", "Absolute score difference between a "
                                         "shadow and the primary, per row.", ("primary",),
                                         DIFF_BUCKETS),
    "raymlops_shadow_dropped_total": ("counter", "Shadow copies dropped because the "
                                      "replica already scored too many at once.", (), None),
    "raymlops_traffic_weight_ratio": ("gauge", "Share of primary traffic routed to the "
                                      "version (0 to 1); shadows show their mirrored share.",
                                      ("role",), None),
}


class ServingMetrics:
    """The metrics of one replica process, made on first use (Ray must be running)."""

    def __init__(self, app: str) -> None:
        self.app = app
        self._metrics: dict[str, Any] | None = None
        self._weights_set: set[tuple[str, str]] = set()  # (version, role) pairs shown

    def _get(self) -> dict[str, Any]:
        if self._metrics is None:
            from ray.util import metrics

            made: dict[str, Any] = {}
            for name, (kind, text, extra, bounds) in DEFINITIONS.items():
                keys = (*TAGS, *extra)
                if kind == "counter":
                    made[name] = metrics.Counter(name, description=text, tag_keys=keys)
                elif kind == "gauge":
                    made[name] = metrics.Gauge(name, description=text, tag_keys=keys)
                else:
                    made[name] = metrics.Histogram(name, description=text, boundaries=bounds or [],
                                                   tag_keys=keys)
            self._metrics = made
        return self._metrics

    def _tags(self, version: str, **extra: str) -> dict[str, str]:
        return {"app": self.app, "model_version": version, **extra}

    def request(self, version: str, protocol: str, status: int, seconds: float) -> None:
        m = self._get()
        m["raymlops_requests_total"].inc(1, self._tags(version, protocol=protocol,
                                                        code=f"{status // 100}xx"))
        m["raymlops_request_duration_seconds"].observe(seconds, self._tags(version))
        if status >= 400:
            kind = "internal" if status >= 500 else "too_large" if status == 413 else \
                "bad_request"
            m["raymlops_request_errors_total"].inc(1, self._tags(version, error=kind))

    def scored(self, version: str, scores: Any, batch_size: int) -> None:
        m = self._get()
        tags = self._tags(version)
        m["raymlops_batch_size"].observe(batch_size, tags)
        m["raymlops_rows_total"].inc(len(scores), tags)
        histogram = m["raymlops_prediction"]
        for score in scores:
            histogram.observe(float(score), tags)

    def shadow(self, version: str, primary: str, rows: int, differing: int,
               differences: Any) -> None:
        m = self._get()
        tags = self._tags(version, primary=primary)
        m["raymlops_shadow_rows_total"].inc(rows, tags)
        if differing:
            m["raymlops_shadow_decisions_differing_total"].inc(differing, tags)
        for diff in differences:
            m["raymlops_shadow_score_difference"].observe(float(diff), tags)

    def shadow_dropped(self, version: str) -> None:
        self._get()["raymlops_shadow_dropped_total"].inc(1, self._tags(version))

    def weights(self, weights: dict[str, float], shadows: dict[str, float]) -> None:
        gauge = self._get()["raymlops_traffic_weight_ratio"]
        now = {(v, "primary"): w for v, w in weights.items()}
        now.update({(v, "shadow"): s for v, s in shadows.items()})
        for (version, role), percent in now.items():
            gauge.set(percent / 100.0, self._tags(version, role=role))
        for version, role in self._weights_set - set(now):  # no longer so: 0, not its last
            gauge.set(0.0, self._tags(version, role=role))
        self._weights_set = set(now)


def endpoints() -> list[str]:
    """Each live Ray node's metrics endpoint (every replica on a node is served there)."""
    from raymlops._internal.ray_runtime import node_metrics_endpoints

    return node_metrics_endpoints()


def ours(exposition: str) -> str:
    """The raymlops families of a node's exposition (what ``promtool check metrics``
    is run on: Ray's own families are Ray's to lint)."""
    out: list[str] = []
    keep = False
    for line in exposition.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            keep = line.split(" ", 3)[2].startswith("ray_raymlops_")
        elif not line.startswith("#"):
            keep = line.startswith("ray_raymlops_")
        if keep:
            out.append(line)
    return "\n".join(out) + "\n"
