"""Tenancy as logic: names, routes and ownership from the config, and the quota's
decisions. The State API readings are replaced here by fixed holdings; the quota on a
real Ray, with real jobs, is tests/integration/test_quota.py."""

from __future__ import annotations

import time

import pytest

from raymlops.config import config_snapshot, load_config
from raymlops.errors import ConfigError, PermissionDeniedError, QuotaExceededError
from raymlops.tenancy import Tenant, ledger
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


class FakeKV:
    """Ray's GCS key-value store as the quota uses it (put-if-absent, prefix listing)."""

    def __init__(self):
        self.data: dict[tuple[str, bytes], bytes] = {}

    def _internal_kv_put(self, key, value, overwrite=True, *, namespace=None):
        key = (namespace, key.encode() if isinstance(key, str) else key)
        existed = key in self.data
        if overwrite or not existed:
            self.data[key] = value.encode() if isinstance(value, str) else value
        return existed

    def _internal_kv_get(self, key, *, namespace=None):
        return self.data.get((namespace, key.encode() if isinstance(key, str) else key))

    def _internal_kv_del(self, key, *, namespace=None):
        self.data.pop((namespace, key.encode() if isinstance(key, str) else key), None)

    def _internal_kv_list(self, prefix, *, namespace=None):
        prefix = prefix.encode() if isinstance(prefix, str) else prefix
        return [k for ns, k in self.data if ns == namespace and k.startswith(prefix)]


@pytest.fixture
def project(monkeypatch):
    """A project's live jobs (id -> start time, CPUs held) in place of the State API."""
    jobs: dict[str, tuple[int, float]] = {}
    kv = FakeKV()
    monkeypatch.setattr(ledger, "_kv", lambda: kv)
    def live(namespace=None):
        return {job: started for job, (started, _) in jobs.items()}

    monkeypatch.setattr(quotas, "live_jobs", live)
    monkeypatch.setattr(ledger, "live_jobs", live)
    monkeypatch.setattr(quotas, "_actual", lambda live: {
        job: {"CPU": jobs[job][1], "GPU": 0.0} for job in live})
    return jobs


def test_admission_counts_what_the_project_holds_already(minimal_raw, project):
    config = load_config(_tenant_raw(minimal_raw, quota={"cpus": 2}))  # needs 1 CPU
    recorded = []
    project.update(old=(1, 1.0), new=(2, 0.0))
    quotas.admit(config, "alpha", lambda reason, payload: recorded.append(payload), "new")
    assert recorded[-1]["admitted"] is True and recorded[-1]["held"]["CPU"] == 1.0
    project.update(old=(1, 1.5), new=(2, 0.0))
    with pytest.raises(QuotaExceededError, match=r"CPU 1.5 held \+ 1 for this job > "
                                                 r"tenancy.quota.cpus 2") as err:
        quotas.admit(config, "alpha", lambda reason, payload: recorded.append(payload), "new")
    assert err.value.exit_code == 75  # retryable: the same job fits once others finish
    assert recorded[-1]["admitted"] is False and recorded[-1]["held"]["CPU"] == 1.5


def test_an_admitted_job_reserves_its_peak_before_it_holds_anything(minimal_raw, project):
    """Two jobs starting together: the first one admitted has not created its placement
    groups yet, but its reservation still counts for the second."""
    config = load_config(_tenant_raw(minimal_raw, quota={"cpus": 2}))  # each needs 1 CPU
    project.update(hold=(1, 0.5), first=(2, 0.0), second=(3, 0.0))
    quotas.admit(config, "alpha", lambda r, p: None, "first")
    assert quotas.held("alpha")["CPU"] == 1.5  # 0.5 held + 1 reserved, nothing used yet
    with pytest.raises(QuotaExceededError, match=r"CPU 1.5 held \+ 1 for this job"):
        quotas.admit(config, "alpha", lambda r, p: None, "second")
    project.update(first=(2, 1.25))  # holding more than it reserved: what it holds counts
    assert quotas.held("alpha")["CPU"] == 1.75
    del project["first"]  # ended: its reservation is dropped
    assert quotas.held("alpha")["CPU"] == 0.5
    quotas.admit(config, "alpha", lambda r, p: None, "second")


def test_admissions_in_a_project_take_turns(project, monkeypatch):
    kv = ledger._kv()
    with ledger.admission_lock("alpha", "first"):
        with (pytest.raises(QuotaExceededError, match="another job's admission"),
              ledger.admission_lock("alpha", "second", timeout_s=0.2)):
            pass
        with ledger.admission_lock("beta", "other"):  # another project does not wait
            pass
    with ledger.admission_lock("alpha", "second"):  # released
        pass
    # a lock left by a job that died mid-admission is taken over once stale
    kv._internal_kv_put("alpha/.admitting", '{"job": "dead", "at": 0}', True,
                        namespace=ledger.KV_NAMESPACE)
    with ledger.admission_lock("alpha", "third", timeout_s=0.2):
        pass
    # a holder whose lock was taken over meanwhile releases only its own
    with ledger.admission_lock("alpha", "slow"):
        kv._internal_kv_put("alpha/.admitting", '{"job": "next", "at": 1e12}', True,
                            namespace=ledger.KV_NAMESPACE)
    assert b'"next"' in kv._internal_kv_get("alpha/.admitting", namespace=ledger.KV_NAMESPACE)


def test_the_watch_stops_a_job_only_after_consecutive_checks_over_the_quota(project):
    import signal

    # the watch interrupts the main thread as Ctrl-C does: through the SIGINT handler,
    # which an earlier in-process CLI run in the session may have replaced
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _watch_until_interrupted(project)
    finally:
        signal.signal(signal.SIGINT, previous)


def _watch_until_interrupted(project):
    readings = iter([3.0, 1.0, 3.0, 3.0, 3.0] + [3.0] * 100)
    project["me"] = (1, 0.0)

    def reading(self):
        project["me"] = (1, next(readings))
        return real(self)

    real = quotas.QuotaWatch.reading
    recorded = []
    watch = quotas.QuotaWatch("alpha", {"CPU": 2.0}, lambda r, p: recorded.append(p), "me",
                              interval_s=0.01, tolerance=3)
    watch.reading = reading.__get__(watch)  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        watch.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            time.sleep(0.01)
    watch.stop()
    assert watch.reason is not None and "over the quota" in watch.reason
    assert recorded == [{"project": "alpha", "job": "me", "held": {"CPU": 3.0, "GPU": 0.0},
                         "project_held": {"CPU": 3.0, "GPU": 0.0}, "older_jobs": [],
                         "quota": {"CPU": 2.0}, "checks": 3}]  # the dip reset the count


def test_the_newest_job_over_the_quota_is_the_one_stopped(project):
    """Newest first: alpha's older job and its newer one hold 3 CPUs of 2. Only the newer
    one is over (1.5 + 1.5 ahead of it); the older one (1.5) keeps running."""
    project.update(older=(1, 1.5), newer=(2, 1.5))
    older = quotas.QuotaWatch("alpha", {"CPU": 2.0}, lambda r, p: None, "older")
    newer = quotas.QuotaWatch("alpha", {"CPU": 2.0}, lambda r, p: None, "newer")
    assert older.reading() == ({"CPU": 1.5, "GPU": 0.0}, {"CPU": 3.0, "GPU": 0.0}, [])
    assert newer.reading() == ({"CPU": 3.0, "GPU": 0.0}, {"CPU": 3.0, "GPU": 0.0}, ["older"])
    assert newer.over(newer.reading()[0]) == {"CPU"} and not older.over(older.reading()[0])
    # an older job that grows within the quota pushes the newer one over, not itself
    project.update(older=(1, 1.75), newer=(2, 0.5))
    assert newer.over(newer.reading()[0]) == {"CPU"} and not older.over(older.reading()[0])
    # a job over the quota on its own is over, however old
    project.update(older=(1, 2.5), newer=(2, 0.0))
    assert older.over(older.reading()[0]) == {"CPU"}


def test_a_jobs_peak_and_ray_data_limit_are_its_reservation(minimal_raw, monkeypatch):
    from ray.data import DataContext

    raw = _tenant_raw(minimal_raw, quota={"cpus": 8})
    raw["train"] = {"framework": "xgboost", "scaling": {"num_workers": 2,
                                                       "cpus_per_worker": 1.5},
                    "tune": {"num_samples": 4, "max_concurrent": 2,
                             "search_space": {"max_depth": {"randint": [2, 6]}}}}
    config = load_config(raw)
    # 2 trials x (2 workers x 1.5 CPUs + each trial's own 0.01 bundle)
    assert quotas.peak(config) == {"CPU": 6.02, "GPU": 0.0}
    small = load_config(_tenant_raw(minimal_raw, quota={"cpus": 8}),
                        {"train.scaling.cpus_per_worker": 0.5})
    assert quotas.peak(small)["CPU"] == 1.0  # its data stages need a whole CPU
    context = DataContext.get_current()
    before = context.execution_options.resource_limits
    try:
        quotas.apply_limits(config, quotas.limits(config))  # 6.02 CPUs, not the free 8
        assert context.execution_options.resource_limits.cpu == 6.02
    finally:
        context.execution_options.resource_limits = before


def test_admission_drops_only_the_reservations_of_ended_jobs(minimal_raw, project,
                                                            monkeypatch):
    config = load_config(_tenant_raw(minimal_raw, quota={"cpus": 4}))
    project.update(ended=(1, 0.0), starting=(2, 0.0), me=(3, 0.0))
    for job in ("ended", "starting"):
        ledger.reserve("alpha", job, {"CPU": 1.0, "GPU": 0.0})
    del project["ended"], project["starting"]  # neither is in this reading's snapshot...
    # ...one of them lives
    monkeypatch.setattr(ledger, "live_jobs", lambda namespace=None: {"starting": 2, "me": 3})
    assert quotas.held("alpha")["CPU"] == 0.0  # a reading ignores both, deletes neither
    assert sorted(ledger._reserved_jobs("alpha")) == ["ended", "starting"]
    quotas.admit(config, "alpha", lambda r, p: None, "me")
    assert sorted(ledger._reserved_jobs("alpha")) == ["me", "starting"]


def test_the_platforms_quota_binds_and_a_config_can_only_lower_it(minimal_raw, project):
    own = load_config(_tenant_raw(minimal_raw, quota={"cpus": 4}))
    none = load_config(_tenant_raw(minimal_raw))
    assert quotas.limits(own, {"CPU": 2.0}) == {"CPU": 2.0}
    assert quotas.limits(own, {"CPU": 8.0, "GPU": 0.0}) == {"CPU": 4.0, "GPU": 0.0}
    assert quotas.limits(none, {"CPU": 3.0}) == {"CPU": 3.0} and quotas.limits(none) == {}
    assert quotas.source(own, "CPU", {"CPU": 2.0}).startswith("the platform's quota for cpus")
    assert quotas.source(own, "CPU", {"CPU": 8.0}) == "tenancy.quota.cpus"
    with pytest.raises(ConfigError, match=r"the platform's quota for gpus .*: 0 is below"):
        quotas.check_config(load_config(_tenant_raw(minimal_raw), {
            "train.scaling.use_gpu": True, "train.scaling.gpus_per_worker": 1}), {"GPU": 0.0})
    ledger.set_platform_quota("alpha", {"CPU": 1.5})
    assert ledger.platform_quotas() == {"alpha": {"CPU": 1.5}}
    project.update(old=(1, 1.0), me=(2, 0.0))
    with pytest.raises(QuotaExceededError, match=r"CPU 1 held \+ 1 for this job > the "
                                                 r"platform's quota for cpus"):
        quotas.admit(own, "alpha", lambda r, p: None, "me", ledger.platform_quota("alpha"))
    assert ledger.clear_platform_quota("alpha") and ledger.platform_quota("alpha") == {}


@pytest.mark.parametrize("command", [["quota", "set", "beta", "--cpus", "99"],
                                     ["quota", "clear", "alpha"], ["quota", "show", "beta"]])
def test_a_project_cannot_set_or_read_quotas_other_than_its_own(tmp_path, command, capsys):
    from raymlops.cli import main

    code = main([*command, "--project", "alpha", "--workdir", str(tmp_path)])
    assert code == 7, capsys.readouterr().err


def test_the_watch_within_the_quota_never_interrupts(project):
    project.update(me=(1, 2.0))
    watch = quotas.QuotaWatch("alpha", {"CPU": 2.0}, lambda r, p: None, "me",
                              interval_s=0.01, tolerance=1).start()
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


@pytest.mark.parametrize("command", [
    ["approve", "beta.credit", "1", "--env", "production"],
    ["promote", "beta.credit", "1", "--to", "production"],
    ["rollback", "beta.credit", "--env", "production"]])
def test_project_binds_governance_commands_whose_config_has_no_tenancy(
        tmp_path, minimal_raw, command, capsys):
    """--project with a plain config (no tenancy section) still refuses another project's
    model: the config alone would be the platform's view."""
    import yaml

    from raymlops.cli import main

    config = tmp_path / "plain.yaml"
    config.write_text(yaml.safe_dump(minimal_raw))
    code = main([*command, "--config", str(config), "--project", "alpha",
                 "--workdir", str(tmp_path)])
    assert code == 7, capsys.readouterr().err
    assert "project 'alpha' cannot" in capsys.readouterr().err


def test_a_workspace_set_for_one_config_does_not_leak_into_the_next(minimal_raw, monkeypatch):
    import mlflow

    from raymlops.tenancy import active_workspace, use_workspace

    monkeypatch.delenv("MLFLOW_WORKSPACE", raising=False)
    monkeypatch.setattr(mlflow, "list_workspaces", lambda: [])
    monkeypatch.setattr(mlflow, "create_workspace", lambda name, description="": None)
    alpha = load_config({**_tenant_raw(minimal_raw, mlflow_workspace=True),
                         "tracking": {"uri": "http://mlflow:5000"}})
    plain = load_config(minimal_raw)
    try:
        assert use_workspace(alpha) == "alpha" and active_workspace() == "alpha"
        assert use_workspace(plain) is None and active_workspace() is None  # dropped
        mlflow.set_workspace("chosen")  # the user's own choice stays
        assert use_workspace(plain) is None and active_workspace() == "chosen"
    finally:
        mlflow.set_workspace(None)
