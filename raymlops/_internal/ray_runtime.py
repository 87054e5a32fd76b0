"""Starting or joining Ray from the driver, with the settings this project relies on."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Iterator

#: Ray token authentication is on by default for clusters started by ``ray.init()``;
#: processes that attach later need the same mode, so the driver always sets it.
DEFAULT_RAY_AUTH_MODE = "token"

#: How often Ray Train's controller polls its workers (Ray's default: 2 s). A worker's
#: ``ray.train.report`` waits for that poll (its result queue holds one report), and
#: a finished run is noticed only at the next poll, so the default adds about 4 s to
#: every fit and up to 2 s to every report; measured in benchmarks/train_vs_plain.py.
#: The poll is a cheap actor call. Ray reads it in the controller's process, so it is
#: set before a local cluster starts; a cluster job gets it from its runtime_env.
TRAIN_POLL_INTERVAL_S = "0.2"


def apply_ray_defaults() -> None:
    """The settings raymlops relies on, for a Ray this process is about to start."""
    set_ray_auth_mode()
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", TRAIN_POLL_INTERVAL_S)


def set_ray_auth_mode() -> None:
    """Make ``RAY_AUTH_MODE`` explicit. Ray reads it when imported, so this only sets it
    while Ray is not imported yet; otherwise the mode Ray already read stays in force."""
    import sys

    if "RAY_AUTH_MODE" not in os.environ and "ray" not in sys.modules:
        os.environ["RAY_AUTH_MODE"] = DEFAULT_RAY_AUTH_MODE


def ray_running() -> bool:
    """Whether this process is connected to Ray, without importing Ray to find out."""
    import sys

    return "ray" in sys.modules and bool(sys.modules["ray"].is_initialized())


#: Whether this process's Ray connection is one it started (a local Ray, stopped with
#: everything in it) or one it joined (a cluster, or a ``ray start`` on this machine,
#: whose Serve applications outlive this process). Set by :func:`init_ray`.
_CONNECTION = {"started_local": False}


def _would_start(target: str | None) -> bool:
    """Whether ``ray.init(address=target)`` starts a new Ray rather than joining one.
    With no address, Ray joins the latest ``ray start`` on this machine if there is one."""
    try:
        from ray._private.services import canonicalize_bootstrap_address

        return canonicalize_bootstrap_address(target) is None  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - private API; an address means joining
        return not target or target == "local"


API_SERVER_VARIABLE = "RAY_API_SERVER_ADDRESS"


@contextlib.contextmanager
def pinned_state_api(port: int | None = None) -> Iterator[int]:
    """Around the ``ray.init`` that starts a local Ray: a dashboard port chosen here
    (yielded, for ``dashboard_port=``: Ray's own 8265 or the next free one, as Ray picks),
    and its URL as ``RAY_API_SERVER_ADDRESS`` in the environment that Ray's processes
    inherit; this process's own value is put back after.

    Ray's State API, called without an address, looks for the one Ray on the machine and
    fails when there are two ("Found multiple active Ray instances"). Ray Train's
    placement-group cleaner calls it so, from inside the cluster: beside a second Ray (a
    laptop running two, a test's own head, a second pytest worker) the cleaner died, a
    dead controller's placement group stayed, and a later Tune trial waited for its CPUs
    for ever. The driver's own State API calls name the cluster (:func:`state_address`);
    leaving the variable set in the driver would send them, and a
    ``JobSubmissionClient`` for another cluster, to this one. Inside this Ray, its
    processes' address-less calls go to this Ray, which is what they mean."""
    port = port or _dashboard_port()
    previous = os.environ.get(API_SERVER_VARIABLE)
    os.environ[API_SERVER_VARIABLE] = f"http://127.0.0.1:{port}"
    try:
        yield port
    finally:
        if previous is None:
            os.environ.pop(API_SERVER_VARIABLE, None)
        else:
            os.environ[API_SERVER_VARIABLE] = previous


def _dashboard_port(first: int = 8265, tries: int = 50) -> int:
    """Ray's default dashboard port if it is free, else the next free one (Ray's own
    rule for its default port), else any free port."""
    for port in [*range(first, first + tries), 0]:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise OSError("no free port for the Ray dashboard")  # pragma: no cover


def state_address() -> str | None:
    """The address for Ray's State API calls of this driver: the GCS of the Ray it is
    connected to (Ray finds that cluster's dashboard from it), never a guess."""
    import ray

    return ray.get_runtime_context().gcs_address if ray.is_initialized() else None


def node_metrics_endpoints() -> list[str]:
    """Each live Ray node's Prometheus endpoint (its agent serves every process's
    metrics on that node)."""
    import ray

    return [f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
            for node in ray.nodes() if node.get("Alive") and node.get("MetricsExportPort")]


def init_ray(address: str | None, *, ingress: str = "proxy", namespace: str | None = None
             ) -> bool:
    """Start or join Ray; returns True when this call connected (and so should disconnect
    with :func:`shutdown_ray`, which stops Serve only in a Ray this process started).

    ``ingress="haproxy"`` starts a local Ray whose Serve uses HAProxy ingress
    (``RAY_SERVE_ENABLE_HA_PROXY``, read by Serve's processes when they start). A
    cluster takes the setting from its own environment (see cluster/).

    ``namespace``: the Ray namespace of this driver (a tenant's project), which its
    actors and jobs inherit and its quota is counted by."""
    apply_ray_defaults()
    target = address or os.environ.get("RAY_ADDRESS")
    if ingress == "haproxy" and (ray_running() or target) and \
            os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") != "1":
        logging.getLogger("raymlops").warning(
            "deploy.ingress is haproxy, but this process joins a Ray it did not start: "
            "Serve uses whatever ingress that cluster was started with (set "
            "RAY_SERVE_ENABLE_HA_PROXY=1 in its nodes' environment)")
    if ray_running():
        if namespace is not None:
            import ray

            current = ray.get_runtime_context().namespace
            if current != namespace:
                logging.getLogger("raymlops").warning(
                    "Ray is already initialized in namespace %r, not the project's %r: "
                    "this run's actors are not in the project's namespace", current,
                    namespace)
        return False
    starts = _would_start(target)
    if ingress == "haproxy" and starts:
        os.environ["RAY_SERVE_ENABLE_HA_PROXY"] = "1"
    import ray

    # The dashboard stays on: it serves the State API, which Ray Train's placement-group
    # cleaner needs. Without it, a controller killed while tearing down (Tune stops a
    # trial, a driver is interrupted) leaves its placement group, and its CPUs, reserved
    # until the driver exits: on a 2-CPU node, a tuning run left 2 CPUs reserved and the
    # next Ray Data stage waited for them forever.
    # ray.init replaces the SIGTERM handler with one that calls sys.exit(15); the CLI's own
    # handler marks the run interrupted and exits 143, so it is put back afterwards.
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main_thread else None
    try:
        with pinned_state_api() if starts else contextlib.nullcontext(None) as port:
            ray.init(address=target, include_dashboard=True, log_to_driver=False,
                     logging_level=logging.WARNING, configure_logging=False,
                     namespace=namespace, dashboard_port=port)
    except (ConnectionError, TimeoutError) as exc:
        if not target:
            raise
        from raymlops.errors import RetryableError

        raise RetryableError(f"cannot reach the Ray cluster at {target} (not running, or "
                             f"still starting): {str(exc).splitlines()[0]}") from exc
    if callable(previous):
        signal.signal(signal.SIGTERM, previous)
    _CONNECTION["started_local"] = starts
    quiet_ray()
    return True


def quiet_ray() -> None:
    import sys

    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = sys.stderr.isatty() and not os.environ.get("CI")
    for name in ("ray.data", "ray.train", "ray.tune", "ray.serve"):
        logging.getLogger(name).setLevel(logging.WARNING)




def shutdown_ray() -> None:
    """Stop what this process started: Serve first, gracefully (each replica writes its
    buffered capture in its destructor), then Ray. ``ray.shutdown`` alone kills the
    replicas without running their destructors.

    A Ray this process joined (``--address``, ``RAY_ADDRESS``, a ``ray start`` on this
    machine) is only disconnected from: its Serve, and every application other drivers
    deployed there, stay up. ``serve.shutdown`` there would take down the whole cluster's
    serving."""
    import ray

    if not ray.is_initialized():
        return
    started = _CONNECTION["started_local"]
    _CONNECTION["started_local"] = False
    if not started:
        ray.shutdown()
        return
    try:
        from ray import serve

        if serve.status().proxies:
            serve.shutdown()
    except Exception as exc:  # noqa: BLE001 - Ray still has to stop
        logging.getLogger(__name__).warning("Serve did not shut down cleanly: %s", exc)
    ray.shutdown()
