"""A tenant's quota around the stages of one run (raymlops/tenancy/quota.py): admitted
before the first stage, watched while they run, every decision in lineage and audit."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from raymlops.errors import QuotaExceededError
from raymlops.tenancy import Tenant
from raymlops.tenancy import quota as quotas

log = logging.getLogger("raymlops")


@contextlib.contextmanager
def quota_guard(ctx: Any, store: Any, run_id: str) -> Iterator[Callable[[], None]]:
    """Yields ``check``, which the driver calls after every stage: a stage that handles
    SIGINT itself (Ray Tune ends its experiment quietly on one) must not let the run go
    on to register and deploy once the watch has stopped it."""
    config = ctx.config
    tenant = Tenant.of(config)
    limits = quotas.limits(config)
    if tenant.namespace is None or not limits:
        yield lambda: None
        return
    _check_namespace(tenant.namespace)

    def record(kind: str) -> Any:
        def write(reason: str, payload: dict[str, Any]) -> None:
            log.info("quota: %s", reason)
            store.add_event(run_id, "quota", kind, {**payload, "reason": reason})
            ctx.services.record(actor=ctx.automatic, action=kind, obj=f"run:{run_id}",
                                reason=reason, payload={"run_id": run_id, **payload})
        return write

    before = quotas.admit(config, tenant.namespace, record("quota_checked"))
    quotas.apply_limits(config, before)
    quota = config.tenancy.quota
    watch = quotas.QuotaWatch(tenant.namespace, limits, record("quota_exceeded"),
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
