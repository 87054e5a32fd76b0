"""The declarative Serve application: shapes, autoscaling, placement and the root route."""

from __future__ import annotations

import pytest
from ray.serve.schema import ServeApplicationSchema

from raymlops.config import DeployConfig
from raymlops.serving import app, placement
from raymlops.serving.deploy import _resources, _settings
from raymlops.serving.routing import plan

VERSIONS = {"1": "models:/m/1", "2": "models:/m/2"}


def _config(deploy: DeployConfig, shape: str, prefix: str = "/m") -> dict:
    replica, ingress = _resources(deploy)
    return app.application_config(
        app=deploy.name, placement=shape, routing=plan("m", VERSIONS, {"1": 90, "2": 10}
                                                       ).to_dict(),
        settings=_settings(deploy, "sqlite:///x.db", None), replica=replica, ingress=ingress,
        route_prefix=prefix)


def test_a_colocated_app_is_one_deployment_with_the_split_in_its_user_config():
    config = _config(DeployConfig(name="m"), "colocated")
    ServeApplicationSchema.model_validate(config)  # what serve deploy takes
    assert [d["name"] for d in config["deployments"]] == ["m"]
    assert config["deployments"][0]["user_config"]["routing"]["weights"] == {"1": 90.0,
                                                                             "2": 10.0}
    assert "versions" not in config["args"]  # a new version is a reconfigure, no restart
    assert config["logging_config"] == {"enable_access_log": False}


def test_the_split_is_not_part_of_the_code_version():
    deploy = DeployConfig(name="m")
    first = _config(deploy, "colocated")
    second = {**first, "deployments": [{"name": "m", "user_config": {"routing": plan(
        "m", VERSIONS, {"1": 50, "2": 50}).to_dict()}}]}
    assert app.code_version(first) == app.code_version(second)
    other = _config(deploy.model_copy(update={"cpus_per_replica": 0.5}), "colocated")
    assert app.code_version(other) != app.code_version(first)


def test_autoscaling_comes_from_the_config_with_a_small_cpu_request():
    deploy = DeployConfig.model_validate({"name": "m", "autoscaling": {
        "min_replicas": 1, "max_replicas": 5, "target_ongoing_requests": 4}})
    options = app._replica_options(_config(deploy, "colocated")["args"]["replica"])
    assert options["autoscaling_config"]["max_replicas"] == 5
    assert options["autoscaling_config"]["target_ongoing_requests"] == 4
    assert "num_replicas" not in options and options["ray_actor_options"] == {"num_cpus": 0.25}
    with pytest.raises(ValueError, match="min_replicas"):
        DeployConfig.model_validate({"name": "m", "autoscaling": {"min_replicas": 3,
                                                                  "max_replicas": 2}})


def test_the_separate_shape_names_its_versions_and_a_gpu_ask():
    deploy = DeployConfig(name="m", gpus_per_replica=1)
    config = _config(deploy, "separate")
    assert config["args"]["versions"] == VERSIONS
    assert app._replica_options(config["args"]["replica"])["ray_actor_options"][
        "num_gpus"] == 1.0
    assert app._replica_options(config["args"]["ingress"])["ray_actor_options"] == {
        "num_cpus": 0.1}


def test_auto_placement_says_why():
    small = {"1": 10 * 2**20, "2": 12 * 2**20}
    shape, why = placement.decide(DeployConfig(name="m"), small)
    assert shape == "colocated" and "22.0 MB" in why
    shape, why = placement.decide(DeployConfig(name="m", colocate_max_mb=16), small)
    assert shape == "separate" and "colocate_max_mb" in why
    shape, why = placement.decide(DeployConfig(name="m", gpus_per_replica=0.5), small)
    assert shape == "separate" and "GPU" in why
    shape, why = placement.decide(DeployConfig(name="m", placement="colocated",
                                               gpus_per_replica=1), small)
    assert shape == "colocated" and why == "deploy.placement is colocated"


def test_a_gpu_version_runs_beside_a_cpu_one_each_with_its_own_resources():
    deploy = DeployConfig(name="m")
    own = {"1": {"num_cpus": 0.25, "num_gpus": 0.0}, "2": {"num_cpus": 1.0, "num_gpus": 1.0}}
    shape, why = placement.decide(deploy, {"1": 1, "2": 1}, own)
    assert shape == "separate" and "different resources" in why
    replica, ingress = _resources(deploy)
    config = app.application_config(
        app="m", placement=shape, routing=plan("m", VERSIONS, {"1": 90, "2": 10}).to_dict(),
        settings=_settings(deploy, "sqlite:///x.db", None), replica=replica, ingress=ingress,
        route_prefix="/m", version_replica=own)
    ServeApplicationSchema.model_validate(config)
    handles = app.build_app(config["args"])._bound_deployment.init_args[1]
    asks = {v: h._bound_deployment.ray_actor_options for v, h in handles.items()}
    assert asks == {"1": {"num_cpus": 0.25}, "2": {"num_cpus": 1.0, "num_gpus": 1.0}}
    # the same asks co-locate; an unknown one (no tag) does not count
    assert placement.decide(deploy, {"1": 1, "2": 1}, {"1": own["1"], "2": None})[0] \
        == "colocated"


def test_the_root_route_goes_to_one_application():
    apps = {"a": {"route_prefix": "/"}, "b": {"route_prefix": "/b"}}
    assert app.choose_prefix("b", "auto", apps)[0] == "/b"
    assert app.choose_prefix("a", "auto", apps)[0] == "/"
    assert app.choose_prefix("b", "always", apps) == ("/", "b answers the standard paths "
                                                      "(/invocations, /v2/...); a moves to /a")
    assert app.choose_prefix("c", "auto", {"b": {"route_prefix": "/b"}})[0] == "/"
    assert app.choose_prefix("c", "never", {})[0] == "/c"


def test_a_client_error_survives_the_handle_between_ingress_and_version():
    """The separate shape returns a version's BadRequest to the ingress pickled."""
    import pickle

    import cloudpickle

    from raymlops.serving.protocol import BadRequest

    error = BadRequest("income", "expected a number, got 'a lot'", status=422, row=3)
    for dumps in (pickle.dumps, cloudpickle.dumps):
        back = pickle.loads(dumps(error))
        assert (back.field, back.message, back.status, back.row) == ("income", error.message,
                                                                     422, 3)
        assert back.to_json() == error.to_json()


def test_a_control_actor_ends_only_when_idle_and_its_application_is_gone():
    from raymlops.serving.control import should_end

    assert should_end(301, 300, app_exists=False)
    assert not should_end(301, 300, app_exists=True)  # deployed, just quiet
    assert not should_end(10, 300, app_exists=False)  # not idle long enough
