"""What a failed fit tells a scheduler: retry (exit 75) only for infrastructure.

The exceptions are built the way Ray Train V2 builds them: a worker's own exception is
wrapped in ``UserExceptionWithTraceback`` (``ray/train/v2/_internal/util.py``), a lost
worker in ``WorkerHealthCheckFailedError`` around the ``ActorDiedError`` of its poll
(``worker_group.py``), both collected into a ``WorkerGroupError`` (``poll.py``); Tune
keeps a trial's failure as a ``RayTaskError`` around the trainer's error.
"""

from __future__ import annotations

import pickle

import pytest
import ray.exceptions as rx
from ray.train.v2._internal.exceptions import (
    BroadcastCollectiveTimeoutError,
    InsufficientClusterResourcesError,
    UserExceptionWithTraceback,
    WorkerGroupStartupTimeoutError,
    WorkerHealthCheckFailedError,
    WorkerHealthCheckTimeoutError,
)
from ray.train.v2.api.exceptions import ControllerError, PreemptionError, WorkerGroupError
from ray.train.v2.api.preemption import PreemptionInfo
from xgboost.core import XGBoostError

from raymlops.errors import ConfigError, RetryableError, TrainingError
from raymlops.training.trainer import (
    is_infrastructure,
    root_error,
    training_failure,
    trials_failure,
)

BAD_DEPTH = ("value -1 for Parameter max_depth should be greater equal to 0\n"
             "max_depth: Maximum depth of the tree; 0 indicates no limit")


def _user(exc: BaseException) -> UserExceptionWithTraceback:
    return UserExceptionWithTraceback(exc, traceback_str=f"Traceback ...\n{exc}")


def _killed_worker() -> WorkerHealthCheckFailedError:
    """What a SIGKILLed worker becomes (tests/chaos/test_worker_kill.py)."""
    return WorkerHealthCheckFailedError("A worker health check failed.\nWorker info: ...",
                                        failure=rx.ActorDiedError())


def _group(*failures: BaseException) -> WorkerGroupError:
    return WorkerGroupError("[Rank 0 Error Snippet]: ...", dict(enumerate(failures)))


INFRASTRUCTURE = [
    rx.ActorDiedError(), rx.ActorUnavailableError("unreachable", None),
    rx.WorkerCrashedError(), rx.NodeDiedError("node gone"), rx.LocalRayletDiedError(),
    rx.ObjectLostError("ab" * 14, None, ""), rx.OwnerDiedError("ab" * 14, None, ""),
    rx.ObjectFetchTimedOutError("ab" * 14, None, ""), rx.RaySystemError("gcs down"),
    rx.ObjectStoreFullError(), rx.OutOfDiskError(), rx.OutOfMemoryError("oom"),
    rx.GetTimeoutError(), rx.RpcError("rpc"), rx.TaskPlacementGroupRemoved(),
    rx.ActorPlacementGroupRemoved(),
    WorkerHealthCheckTimeoutError("hung"), _killed_worker(),
    WorkerGroupStartupTimeoutError(2), InsufficientClusterResourcesError("no GPU nodes"),
    BroadcastCollectiveTimeoutError(1.0, [1], 2.0),
    PreemptionError(PreemptionInfo(deadline_ms=None, preempted_node_to_ranks={"n": [0]})),
    ConnectionError("refused"),
]


@pytest.mark.parametrize("exc", INFRASTRUCTURE, ids=lambda e: type(e).__name__)
def test_infrastructure_failures_are_retryable_however_ray_wraps_them(exc):
    assert is_infrastructure(exc)
    assert is_infrastructure(_group(exc))
    assert is_infrastructure(ControllerError(exc))
    assert isinstance(training_failure(_group(exc)), RetryableError)


def test_a_killed_worker_is_retryable_and_says_how_to_resume():
    error = training_failure(_group(_killed_worker()))
    assert isinstance(error, RetryableError) and error.exit_code == 75
    # tests/chaos/test_worker_kill.py matches this text
    assert "resumed with --run-id" in str(error)
    # a WorkerGroupError pickled and read back (how Tune stores a trial's error) too
    assert is_infrastructure(pickle.loads(pickle.dumps(_group(_killed_worker()))))


def test_a_bad_parameter_on_a_worker_is_a_training_error_naming_it():
    failure = _group(_user(XGBoostError(BAD_DEPTH)))
    assert not is_infrastructure(failure)
    assert isinstance(root_error(failure), XGBoostError)
    error = training_failure(failure)
    assert isinstance(error, TrainingError) and error.exit_code == 10
    headline = error.headline()
    assert "\n" not in headline
    assert "XGBoostError: value -1 for Parameter max_depth should be greater equal to 0" in \
        headline
    assert "train.params" in headline
    # poll.py hands the base exception over unwrapped: the same verdict
    assert isinstance(training_failure(_group(XGBoostError(BAD_DEPTH))), TrainingError)


def test_xgboost_native_check_prefix_is_dropped_from_the_message():
    native = XGBoostError("[21:39:59] /__w/xgboost/src/metric/metric.cc:49: Unknown metric "
                          "function nonsense\nStack trace: ...")
    error = training_failure(_group(_user(native)))
    assert "XGBoostError: Unknown metric function nonsense;" in str(error)


@pytest.mark.parametrize("exc", [
    ValueError("feature_names must be unique. Duplicates found: ['a']"),
    TypeError("bad"), KeyError("_label"), RuntimeError("CUDA error: invalid device"),
    rx.RayTaskError("fn", "tb", ValueError("inside a task")),
    rx.RuntimeEnvSetupError("pip install failed"),
], ids=lambda e: type(e).__name__)
def test_other_failures_are_permanent(exc):
    assert not is_infrastructure(exc)
    assert not is_infrastructure(_group(_user(exc)))
    assert isinstance(training_failure(_group(_user(exc))), TrainingError)


def test_a_group_is_retryable_only_when_every_worker_failed_for_infrastructure():
    assert is_infrastructure(_group(_killed_worker(), rx.NodeDiedError("n")))
    mixed = _group(_killed_worker(), _user(XGBoostError(BAD_DEPTH)))
    assert not is_infrastructure(mixed)
    assert isinstance(root_error(mixed), XGBoostError)  # the user's error is the one named
    assert not is_infrastructure(WorkerGroupError("no failures recorded", {}))


def test_controller_error_is_judged_by_its_controller_failure():
    assert is_infrastructure(ControllerError(rx.ActorDiedError()))
    error = training_failure(ControllerError(ValueError("bad callback")))
    assert isinstance(error, TrainingError) and "ValueError: bad callback" in str(error)


def test_cause_and_context_chains_are_followed():
    try:
        try:
            raise ConnectionError("store unreachable")
        except ConnectionError as inner:
            raise RuntimeError("could not save the checkpoint") from inner
    except RuntimeError as outer:
        caused = outer
    assert is_infrastructure(caused)
    try:
        try:
            raise rx.NodeDiedError("node gone")
        except rx.NodeDiedError:
            raise ValueError("while handling it") from None
    except ValueError as outer:
        suppressed = outer
    # ``from None`` still keeps __context__: Python records what was being handled
    assert is_infrastructure(suppressed)
    loop = ValueError("a")
    loop.__context__ = ValueError("b")
    loop.__context__.__context__ = loop  # a cycle ends the walk
    assert not is_infrastructure(loop)


def test_ray_task_error_is_judged_by_its_cause():
    task = rx.RayTaskError("trial", "tb", _group(_killed_worker()))
    assert is_infrastructure(task)
    assert is_infrastructure(task.as_instanceof_cause())
    user = rx.RayTaskError("trial", "tb", _group(_user(XGBoostError(BAD_DEPTH))))
    assert not is_infrastructure(user.as_instanceof_cause())
    assert isinstance(root_error(user), XGBoostError)


def test_sqlalchemy_operational_error_is_retryable():
    from sqlalchemy.exc import OperationalError

    assert is_infrastructure(OperationalError("SELECT 1", {}, Exception("database is locked")))


def test_raymlops_errors_keep_their_kind():
    assert is_infrastructure(RetryableError("port in use"))
    error = training_failure(_group(_user(ConfigError("train.params.epochs: not a number"))))
    assert type(error) is ConfigError and error.exit_code == 2


def test_tuning_with_every_trial_failed_is_classified_from_the_trials():
    bad = rx.RayTaskError("trial", "tb", _group(_user(XGBoostError(BAD_DEPTH))))
    lost = rx.RayTaskError("trial", "tb", _group(_killed_worker()))
    permanent = trials_failure([bad, bad], what="tuning t")
    assert isinstance(permanent, TrainingError)
    assert "every trial failed" in str(permanent) and "max_depth" in str(permanent)
    # one trial lost to the cluster: a retry (resume_errored) may finish it
    assert isinstance(trials_failure([bad, lost], what="tuning t"), RetryableError)
    # a trial error Tune kept only as text cannot be judged: not retried
    assert isinstance(trials_failure(["Traceback ... ValueError: x"], what="tuning t"),
                      TrainingError)
    assert isinstance(trials_failure([], what="tuning t"), TrainingError)
