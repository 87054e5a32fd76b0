"""Serving on a real Ray Serve: idempotent deploys, and a capture that loses no row.

Every replica writes its buffered capture on request (through the control actor, so a
flush reaches each replica, not one per version), on a timer (not on the next request)
and when it shuts down.
"""

from __future__ import annotations

import time

import pandas as pd
import pytest
import requests

from raymlops.config import DeployConfig
from raymlops.serving.deploy import deploy, flush_capture

pytestmark = pytest.mark.integration
APP = "capture-test"


@pytest.fixture(scope="module")
def model(serving_models):
    yield {"uri": serving_models["uris"]["1"], "ws": serving_models["ws"],
           "row": serving_models["rows"].head(1).to_dict("records")[0]}
    from ray import serve

    serve.delete(APP)


def _deploy(model, serve_port, **settings):
    config = DeployConfig(name=APP, port=serve_port, **settings)
    return deploy(config, versions={"1": model["uri"]}, weights={"1": 100.0},
                  tracking_uri=model["ws"].mlflow_uri, capture_root=model["ws"].capture_dir)


def _captured(model) -> pd.DataFrame:
    files = sorted((model["ws"].capture_dir / APP / "v1").glob("*.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files]) if files else pd.DataFrame()


def _send(result, model, count: int) -> None:
    session = requests.Session()
    for i in range(count):
        answer = session.post(result.endpoint, json={"dataframe_records": [model["row"]]},
                              timeout=30, headers={"x-request-id": f"req-{time.time()}-{i}"})
        assert answer.status_code == 200, answer.text


def _clear(model) -> None:
    for path in (model["ws"].capture_dir / APP / "v1").glob("*.parquet"):
        path.unlink()


def test_a_redeploy_of_the_same_thing_keeps_the_replicas(model, serve_port):
    from ray import serve

    first = _deploy(model, serve_port, replicas=1)
    handle = serve.get_deployment_handle(APP, app_name=APP)
    identity = handle.identity.remote().result(timeout_s=30)
    again = _deploy(model, serve_port, replicas=1)
    assert again.deploy_version == first.deploy_version
    assert handle.identity.remote().result(timeout_s=30) == identity
    other = _deploy(model, serve_port, replicas=1, capture_max_rows=7)
    assert other.deploy_version != first.deploy_version  # a real change restarts them


def test_a_flush_reaches_every_replica(model, serve_port):
    result = _deploy(model, serve_port, replicas=2, capture_flush_s=3600,
                     capture_max_rows=100_000)
    _clear(model)
    _send(result, model, 40)
    assert _captured(model).empty  # nothing written yet: no timer, no size limit reached
    written = flush_capture(APP, ["1"], timeout_s=30)
    captured = _captured(model)
    assert written == 40 and len(captured) == 40
    tags = {p.name.rsplit("-", 1)[0] for p in (model["ws"].capture_dir / APP / "v1").glob(
        "*.parquet")}
    assert len(tags) == 2  # both replicas had rows, and both wrote them
    assert captured["_request_id"].str.startswith("req-").all()


def test_the_age_timer_writes_without_another_request(model, serve_port):
    result = _deploy(model, serve_port, replicas=1, capture_flush_s=0.5,
                     capture_max_rows=100_000)
    _clear(model)
    _send(result, model, 3)
    deadline = time.monotonic() + 20
    while len(_captured(model)) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(_captured(model)) == 3


def test_a_replica_writes_its_buffer_when_it_shuts_down(model, serve_port):
    from ray import serve

    result = _deploy(model, serve_port, replicas=1, capture_flush_s=3600,
                     capture_max_rows=100_000)
    _clear(model)
    _send(result, model, 5)
    assert _captured(model).empty
    serve.delete(APP)
    assert len(_captured(model)) == 5


def test_a_control_actor_ends_once_its_application_is_gone(ray_session):
    """A detached control actor whose application no longer exists ends itself after its
    idle time (20 s in this session, tests/conftest.py), instead of keeping a process for
    good: one that was never deployed, and the capture test's, whose application the
    test above deleted with serve.delete."""
    import ray

    from raymlops.serving import control

    actor = control.get_or_create("never-deployed")
    assert ray.get(actor.generation.remote(), timeout=60) == 0
    deadline, alive = time.monotonic() + 120, {"never-deployed", APP}
    while alive and time.monotonic() < deadline:
        for app in list(alive):
            try:
                control.lookup(app)
            except ValueError:  # no actor by that name any more
                alive.discard(app)
        time.sleep(2)
    assert not alive, f"control actors still alive after 120 s: {alive}"
