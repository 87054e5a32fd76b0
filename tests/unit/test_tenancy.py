"""Tenancy as logic: names, routes and ownership from the config, and the quota's
decisions. The State API readings are replaced here by fixed holdings; the quota on a
real Ray, with real jobs, is tests/integration/test_quota.py."""

from __future__ import annotations

import time

import pytest

from raymlops.config import config_snapshot, load_config
from raymlops.errors import ConfigError, PermissionDeniedError, QuotaExceededError
from raymlops.tenancy import Tenant
from raymlops.tenancy import quota as quotas


def _tenant_raw(minimal_raw: dict, project: str = "alpha", **tenancy) -> dict:
    return {**minimal_raw, "project": project, "tenancy": tenancy}


def test_a_tenant_gets_prefixed_names_and_routes(minimal_raw):
    config = load_config(_tenant_raw(minimal_raw, quota={"cpus": 2}))
    assert config.deploy.name == "alpha.m"
    assert config.deploy.route_prefix == "/alpha/m"
    assert config.deploy.standard_paths == "never"
    assert Tenant.of(config) == Tenant("alpha") and Tenant.of(config).namespace == "alpha"
    # a recorded config (what retrain and serve load) reads back unchanged
    assert load_config(config_snapshot(config)) == config


def test_without_tenancy_nothing_is_renamed(minimal_raw):
    config = load_config({**minimal_raw, "project": "alpha"})
    assert config.deploy.name == "m" and config.deploy.route_prefix is None
    assert Tenant.of(config).project is None


@pytest.mark.parametrize(("change", "key"), [
    ({"deploy": {"name": "beta.m"}}, "deploy.name"),
    ({"deploy": {"name": "m", "route_prefix": "/beta/m"}}, "deploy.route_prefix"),
    ({"deploy": {"name": "m", "standard_paths": "always"}}, "deploy.standard_paths"),
    ({"project": "al.pha"}, "project"),
    ({"tracking": {"experiment": "beta"}}, "tracking.experiment"),
    ({"tenancy": {"mlflow_workspace": True}, "tracking": {"uri": "sqlite:///m.db"}},
     "tenancy.mlflow_workspace"),
    ({"project": "Alpha_1", "tenancy": {"mlflow_workspace": True},
      "tracking": {"uri": "http://mlflow:5000"}}, "project"),
])
def test_a_name_or_route_outside_the_project_is_a_config_error_naming_the_key(
        minimal_raw, change, key):
    with pytest.raises(ConfigError) as err:
        load_config({**_tenant_raw(minimal_raw), **change})
    assert key in str(err.value)


def test_a_tenant_owns_only_its_own_models():
    alpha = Tenant("alpha")
    assert alpha.own("credit") == "alpha.credit" == alpha.own("alpha.credit")
    with pytest.raises(PermissionDeniedError, match=r"'beta\.credit'.*project 'beta'"):
        alpha.own("beta.credit", "promote")
    assert alpha.sees("alpha.credit") and not alpha.sees("beta.credit")
    assert not alpha.sees("credit")  # an unprefixed model belongs to no project
    platform = Tenant(None)
    assert platform.own("beta.credit") == "beta.credit" and platform.sees("anything")
    assert alpha.registry_filter() == "name LIKE 'alpha.%'"


def test_a_job_bigger_than_its_quota_is_refused_naming_the_key(minimal_raw):
    raw = _tenant_raw(minimal_raw, quota={"cpus": 1.5})
    raw["train"] = {"framework": "xgboost", "scaling": {"num_workers": 2,
                                                       "cpus_per_worker": 1}}
    with pytest.raises(ConfigError, match=r"tenancy\.quota\.cpus: 1.5 .*\(2"):
        quotas.check_config(load_config(raw))


def test_admission_counts_what_the_project_holds_already(minimal_raw, monkeypatch):
    config = load_config(_tenant_raw(minimal_raw, quota={"cpus": 2}))  # needs 1 CPU
    recorded = []
    monkeypatch.setattr(quotas, "held", lambda namespace: {"CPU": 1.0, "GPU": 0.0})
    quotas.admit(config, "alpha", lambda reason, payload: recorded.append(payload))
    assert recorded[-1]["admitted"] is True
    monkeypatch.setattr(quotas, "held", lambda namespace: {"CPU": 1.5, "GPU": 0.0})
    with pytest.raises(QuotaExceededError, match=r"CPU 1.5 held \+ 1 for this job > "
                                                 r"tenancy.quota.cpus 2") as err:
        quotas.admit(config, "alpha", lambda reason, payload: recorded.append(payload))
    assert err.value.exit_code == 75  # retryable: the same job fits once others finish
    assert recorded[-1]["admitted"] is False and recorded[-1]["held"]["CPU"] == 1.5


def test_the_watch_stops_a_job_only_after_consecutive_checks_over_the_quota(monkeypatch):
    import signal

    # the watch interrupts the main thread as Ctrl-C does: through the SIGINT handler,
    # which an earlier in-process CLI run in the session may have replaced
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _watch_until_interrupted(monkeypatch)
    finally:
        signal.signal(signal.SIGINT, previous)


def _watch_until_interrupted(monkeypatch):
    readings = iter([3.0, 1.0, 3.0, 3.0, 3.0] + [3.0] * 100)
    monkeypatch.setattr(quotas, "held", lambda namespace: {"CPU": next(readings), "GPU": 0.0})
    recorded = []
    watch = quotas.QuotaWatch("alpha", {"CPU": 2.0}, lambda r, p: recorded.append(p),
                              interval_s=0.01, tolerance=3)
    with pytest.raises(KeyboardInterrupt):
        watch.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            time.sleep(0.01)
    watch.stop()
    assert watch.reason is not None and "over tenancy.quota" in watch.reason
    assert recorded == [{"project": "alpha", "held": {"CPU": 3.0, "GPU": 0.0},
                         "quota": {"CPU": 2.0}, "checks": 3}]  # the dip reset the count


def test_the_watch_within_the_quota_never_interrupts(monkeypatch):
    monkeypatch.setattr(quotas, "held", lambda namespace: {"CPU": 2.0, "GPU": 0.0})
    watch = quotas.QuotaWatch("alpha", {"CPU": 2.0}, lambda r, p: None, interval_s=0.01,
                              tolerance=1).start()
    time.sleep(0.3)
    watch.stop()
    assert watch.reason is None


@pytest.mark.parametrize("command", [
    ["lineage", "beta.credit/1"], ["serving-at", "beta.credit", "2026-12-01T00:00:00Z"],
    ["evaluate", "beta.credit", "--data", "x.csv"], ["serve", "beta.credit@champion"],
    ["retrain", "beta.credit/1"], ["changes", "beta.credit"],
    ["export-serve", "beta.credit"],
])
def test_every_command_refuses_another_projects_model_with_exit_7(tmp_path, command, capsys):
    from raymlops.cli import main

    code = main([*command, "--project", "alpha", "--workdir", str(tmp_path)])
    assert code == 7, capsys.readouterr().err
    assert "project 'alpha' cannot" in capsys.readouterr().err
