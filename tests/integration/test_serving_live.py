"""Live changes on a real Ray Serve: weights under load, shadows, and per-version metrics.

Two replicas of one co-located application. A weight change (and a new version) is a
reconfigure pushed through the control actor: no replica restarts and no request is
dropped. Metrics come from Ray's own export (each node's metrics agent), scraped from
one endpoint for both replicas, and pass ``promtool check metrics``.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from raymlops.config import DeployConfig
from raymlops.serving import control, metrics
from raymlops.serving.deploy import current_routing, deploy, wait_routed
from raymlops.serving.routing import plan
from tests.conftest import METRICS_REPORT_MS

pytestmark = pytest.mark.integration
APP = "live-test"


def _replica_actors() -> set[str]:
    from ray.util.state import list_actors

    from raymlops._internal.ray_runtime import state_address

    return {a.actor_id for a in list_actors(address=state_address(),
                                           filters=[("state", "=", "ALIVE")], limit=10_000,
                                           raise_on_missing_output=False)
            if a.class_name == f"ServeReplica:{APP}:{APP}"}


@pytest.fixture(scope="module")
def live(serving_models, serve_port):
    ws = serving_models["ws"]
    config = DeployConfig(name=APP, port=serve_port, replicas=2, standard_paths="never")

    def to(weights, shadows=None):
        return deploy(config, versions=serving_models["uris"], weights=weights,
                      shadows=shadows, tracking_uri=ws.mlflow_uri, capture_root=None)

    first = to({"1": 100})
    record = json.loads(serving_models["rows"].head(1).to_json(orient="records"))
    yield {"to": to, "first": first, "url": first.endpoint, "record": record,
           "uris": serving_models["uris"]}
    from ray import serve

    serve.delete(APP)


class Load:
    """Closed-loop clients sending one-row requests until stopped; every answer kept."""

    def __init__(self, url: str, record: list, clients: int = 6) -> None:
        self.url, self.body = url, {"dataframe_records": record}
        self.answers: list[tuple[float, int, str]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(clients)]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            sent = time.monotonic()  # when it was sent: the split it was routed by
            try:
                answer = session.post(self.url, json=self.body, timeout=30)
                self.answers.append((sent, answer.status_code,
                                     answer.headers.get("X-Model-Version", "")))
            except requests.RequestException as exc:
                self.answers.append((sent, 0, type(exc).__name__))

    def stop(self) -> list[tuple[float, int, str]]:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        return self.answers


def test_weight_changes_under_load_drop_no_request(live):
    load = Load(live["url"], live["record"])
    marks = []
    try:
        time.sleep(1.0)  # steady load before the first change
        replicas = _replica_actors()
        for weights in ({"1": 50, "2": 50}, {"1": 10, "2": 90}, {"1": 100}):
            started = time.monotonic()
            result = live["to"](weights)
            marks.append((started, time.monotonic(), weights, result.deploy_version))
            # long enough that the share is a fair sample: the clients are closed-loop, so
            # in a short window a version's slow first answers (a cold batch queue on a
            # loaded box) hold clients and under-count it
            time.sleep(3.0)
        marks.append((time.monotonic(), 0.0, {}, ""))
    finally:
        answers = load.stop()
    assert len(answers) > 100
    failed = [a for a in answers if a[1] != 200]
    assert not failed, failed[:5]
    # no replica restarted: the same two replica actors before and after every change
    assert len(replicas) == 2 and _replica_actors() == replicas
    assert {m[3] for m in marks[:-1]} == {live["first"].deploy_version}
    # from each deploy's return to the next one's start, answers follow its split
    for (_, done, weights, _), following in itertools.pairwise(marks):
        seen = [v for t, _, v in answers if done < t < following[0]]
        share = seen.count("2") / len(seen)
        assert abs(share - weights.get("2", 0) / 100) < 0.2, (weights, share)
        if weights == {"1": 100}:
            assert set(seen) == {"1"}


def test_the_control_actor_alone_reaches_every_replica(live):
    """No user_config change at all: the replicas follow the control actor's state."""
    previous = current_routing(APP)
    state = plan(APP, live["uris"], {"2": 100}, previous=previous)
    actor = control.lookup(APP)
    import ray

    ray.get(actor.set_routing.remote(state.to_dict()))
    wait_routed(APP, state.generation, timeout_s=30)
    assert len(ray.get(actor.routed_by.remote(state.generation, [APP]))) == 2
    versions = {requests.post(live["url"], json={"dataframe_records": live["record"]},
                              timeout=30).headers["X-Model-Version"] for _ in range(20)}
    assert versions == {"2"}
    live["to"]({"1": 100})


def _families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def _total(families: dict, name: str, suffix: str = "", **labels: str) -> float:
    # the parser names a counter's family without its _total; its samples keep it
    family = families.get(name) or families.get(name.removesuffix("_total"))
    if family is None:
        return 0.0
    return sum(s.value for s in family.samples if s.name == name + suffix and all(
        s.labels.get(k) == v for k, v in labels.items()))


def _scrape() -> str:
    [endpoint] = metrics.endpoints()  # one node: one endpoint for every replica
    return requests.get(endpoint, timeout=10).text


def _wait_for(check, timeout_s: float = 30.0):
    deadline = time.monotonic() + timeout_s
    while True:
        families = _families(_scrape())
        if check(families) or time.monotonic() > deadline:
            return families
        time.sleep(0.5)


def _settled() -> dict:
    """A scrape after the agent has reported every earlier request: the count stands
    still across more than one report interval (each replica reports on its own clock,
    so two scrapes inside one interval can agree while a report is still to come)."""
    last = None
    while True:
        families = _families(_scrape())
        now = _total(families, "ray_raymlops_requests_total", app=APP)
        if now == last:
            return families
        last = now
        time.sleep(METRICS_REPORT_MS / 1000 + 1.0)


def test_shadow_copies_and_per_version_metrics(live):
    before = _settled()
    live["to"]({"1": 100}, shadows={"2": 100})
    sent = 40
    for _ in range(sent):
        answer = requests.post(live["url"], json={"dataframe_records": live["record"]},
                               timeout=30)
        assert answer.status_code == 200 and answer.headers["X-Model-Version"] == "1"
    bad = requests.post(live["url"], json={"dataframe_records": [{"nope": 1}]}, timeout=30)
    assert bad.status_code == 400
    tags = {"app": APP}

    def counted(families) -> bool:
        return _total(families, "ray_raymlops_shadow_rows_total", model_version="2",
                      **tags) - _total(before, "ray_raymlops_shadow_rows_total",
                                       model_version="2", **tags) >= sent

    families = _wait_for(counted)
    assert counted(families)

    def delta(name: str, suffix: str = "", **labels: str) -> float:
        return _total(families, name, suffix, **labels, **tags) - _total(
            before, name, suffix, **labels, **tags)

    assert delta("ray_raymlops_requests_total", model_version="1", code="2xx",
                 protocol="mlflow") >= sent
    assert delta("ray_raymlops_requests_total", model_version="2") == 0  # shadows only
    assert delta("ray_raymlops_request_errors_total", error="bad_request") >= 1
    assert delta("ray_raymlops_request_duration_seconds", "_count", model_version="1") >= sent
    assert delta("ray_raymlops_prediction", "_count", model_version="2") >= sent
    assert delta("ray_raymlops_batch_size", "_count", model_version="1") >= 1
    # the two versions' scores differ (10 trees against 2): the shadow says by how much
    assert delta("ray_raymlops_shadow_score_difference", "_sum", model_version="2") > 0
    weights = {s.labels["model_version"]: s.value for s in families[
        "ray_raymlops_traffic_weight_ratio"].samples if s.labels.get("app") == APP
        and s.labels.get("role") == "primary"}
    assert weights.get("1") == 1.0
    workers = {s.labels["WorkerId"] for s in families["ray_raymlops_requests"].samples
               if s.labels.get("app") == APP}
    assert len(workers) == 2  # both replicas, from one scrape
    live["to"]({"1": 100})


CONFIG = Path(__file__).resolve().parents[2] / "cluster" / "prometheus" / "prometheus.yml"


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, (f"{name} is missing: install Debian's prometheus package "
                  "(apt-get install prometheus); .ci/run installs it")
    return path


def _renames() -> dict[str, str]:
    """Ray's camelCase labels and the names the shipped scrape config gives them."""
    [job] = yaml.safe_load(CONFIG.read_text())["scrape_configs"]
    return {r["source_labels"][0]: r["target_label"] for r in job["metric_relabel_configs"]
            if "target_label" in r}


def _traffic(live) -> None:
    for _ in range(10):  # this module's own requests, from both replicas' series up
        assert requests.post(live["url"], json={"dataframe_records": live["record"]},
                             timeout=30).status_code == 200


def test_the_exposition_passes_promtool(live):
    """raymlops' families as Prometheus stores them with the shipped scrape config: its
    names and labels, with Ray's own resource labels renamed to snake_case."""
    _traffic(live)
    text = metrics.ours(_wait_for(lambda f: "ray_raymlops_requests" in f and any(
        s.labels.get("app") == APP for s in f["ray_raymlops_requests"].samples)) and _scrape())
    assert "ray_raymlops_requests_total" in text
    for ray_label, ours in _renames().items():
        text = re.sub(rf"([{{,]){ray_label}=", rf"\g<1>{ours}=", text)
    checked = subprocess.run([_tool("promtool"), "check", "metrics"], input=text, text=True,
                             capture_output=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_real_prometheus_scrapes_every_replica_from_one_endpoint(live, tmp_path):
    from tests.conftest import free_port

    for _ in range(4):  # enough requests that both replicas answered some
        _traffic(live)

    [endpoint] = metrics.endpoints()
    target = endpoint.removeprefix("http://").removesuffix("/metrics")
    (tmp_path / "targets.json").write_text(json.dumps([{"targets": [target]}]))
    config = yaml.safe_load(CONFIG.read_text())
    # the session exports many of Ray's own series: give a scrape time to finish
    config["global"].update({"scrape_interval": "3s", "scrape_timeout": "3s"})
    config["scrape_configs"][0]["file_sd_configs"] = [{"files": [str(tmp_path /
                                                                     "targets.json")]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    subprocess.run([_tool("promtool"), "check", "config", str(CONFIG)], check=True,
                   capture_output=True)
    port = free_port()
    server = subprocess.Popen([_tool("prometheus"), f"--config.file={tmp_path}/prometheus.yml",
                               f"--storage.tsdb.path={tmp_path}/data",
                               f"--web.listen-address=127.0.0.1:{port}"],
                              stdout=subprocess.DEVNULL,
                              stderr=(tmp_path / "prometheus.log").open("w"))
    try:
        query = f"http://127.0.0.1:{port}/api/v1/query"
        deadline = time.monotonic() + 60
        series: list = []
        while not series and time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                answer = requests.get(query, params={"query": "ray_raymlops_requests_total"
                                                     f'{{app="{APP}"}}'}, timeout=5).json()
                series = answer["data"]["result"]
            except (requests.RequestException, KeyError, ValueError):
                continue
        if not series:
            targets = requests.get(f"http://127.0.0.1:{port}/api/v1/targets", timeout=5).json()
            health = [(t.get("scrapeUrl"), t.get("health"), t.get("lastError"))
                      for t in targets["data"]["activeTargets"]]
            log = (tmp_path / "prometheus.log").read_text()[-2000:]
            raise AssertionError(f"Prometheus scraped no raymlops series within 60 s: "
                                 f"targets {health}; log: {log}")
        labels = {k for s in series for k in s["metric"]}
        assert {"app", "model_version", "worker_id", "code", "protocol"} <= labels
        assert all(re.fullmatch(r"[a-z_][a-z0-9_]*", k) for k in labels), labels
        assert len({s["metric"]["worker_id"] for s in series}) == 2  # both replicas
    finally:
        server.terminate()
        server.wait(timeout=30)
