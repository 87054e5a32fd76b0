"""A tenant's quota around the stages of one run (raymlops/tenancy/quota.py): admitted
before the first stage, watched while they run, every decision in lineage and audit."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from raymlops.errors import QuotaExceededError
from raymlops.tenancy import Tenant, ledger
from raymlops.tenancy import quota as quotas

log = logging.getLogger("raymlops")


@contextlib.contextmanager
def quota_guard(ctx: Any, store: Any, run_id: str) -> Iterator[Callable[[], None]]:
    """Yields ``check``, which the driver calls after every stage: a stage that handles
    SIGINT itself (Ray Tune ends its experiment quietly on one) must not let the run go
    on to register and deploy once the watch has stopped it."""
    config = ctx.config
    tenant = Tenant.of(config)
    if tenant.namespace is None:
        yield lambda: None
        return
    platform = ledger.platform_quota(tenant.namespace)
    limits = quotas.limits(config, platform)
    if not limits:
        yield lambda: None
        return
    _check_namespace(tenant.namespace)
    quotas.check_config(config, platform)  # the platform's quota may be below the config's

    def record(kind: str) -> Any:
        def write(reason: str, payload: dict[str, Any]) -> None:
            log.info("quota: %s", reason)
            store.add_event(run_id, "quota", kind, {**payload, "reason": reason})
            ctx.services.record(actor=ctx.automatic, action=kind, obj=f"run:{run_id}",
                                reason=reason, payload={"run_id": run_id, **payload})
        return write

    import ray

    job = ray.get_runtime_context().get_job_id()
    quotas.admit(config, tenant.namespace, record("quota_checked"), job, platform)
    quotas.apply_limits(config, limits)
    quota = config.tenancy.quota
    watch = quotas.QuotaWatch(tenant.namespace, limits, record("quota_exceeded"), job,
                              interval_s=quota.check_interval_s,
                              tolerance=quota.tolerance_checks).start()
    def check() -> None:
        if watch.reason is not None:
            raise QuotaExceededError(watch.reason)

    try:
        yield check
    except KeyboardInterrupt:
        if watch.reason is not None:
            raise QuotaExceededError(watch.reason) from None
        raise
    finally:
        watch.stop()
        try:
            ledger.release(tenant.namespace, job)
        except Exception as exc:  # noqa: BLE001 - an ended job's reservation is dropped anyway
            log.debug("quota: reservation of %s not released: %s", job, exc)


def _check_namespace(namespace: str) -> None:
    """The project's holdings are counted by Ray namespace: a driver that joined Ray in
    another one (a notebook's own ray.init) would hold CPUs the quota never sees."""
    import ray

    current = ray.get_runtime_context().namespace
    if current != namespace:
        from raymlops.errors import ConfigError

        raise ConfigError(f"tenancy.quota: Ray is already initialized in namespace "
                          f"{current!r}, but project {namespace!r} counts its quota in "
                          f"namespace {namespace!r}; call ray.init(namespace={namespace!r}) "
                          "first, or run the pipeline as its own job")
