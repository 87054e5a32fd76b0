"""One exception hierarchy for raymlops.

Every error has a one-line headline that names the thing and the fix, and an exit
code that tells a scheduler whether a retry can help (``RETRYABLE_EXIT_CODE``).
"""

from __future__ import annotations

#: Exit code for failures that a plain retry may fix (a busy port, a cluster that is
#: still starting). Same value as ``EX_TEMPFAIL`` in sysexits.h.
RETRYABLE_EXIT_CODE = 75


class RaymlopsError(Exception):
    """Base class. ``str(err)`` is a one-line message that says what to do next."""

    exit_code: int = 1
    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def headline(self) -> str:
        """The first line of the message, for terminals and CI logs."""
        return f"{type(self).__name__}: {self.message.splitlines()[0]}"


class ConfigError(RaymlopsError):
    """The pipeline config is invalid; the message names the key path."""

    exit_code = 2


class DataError(RaymlopsError):
    """The input data is missing or unreadable."""

    exit_code = 3


class DataValidationError(DataError):
    """The data was read but fails validation (too many bad rows, wrong schema)."""


class GateRejectedError(RaymlopsError):
    """A model failed its quality gates: it is registered, tagged rejected, never served."""

    exit_code = 4


class RegistryConflictError(RaymlopsError):
    """The model registry holds something that contradicts what this run expects."""

    exit_code = 5


class IntegrityError(RaymlopsError):
    """A stored artifact or record does not match its recorded digest."""

    exit_code = 6


class PermissionDeniedError(RaymlopsError):
    """The caller's role does not allow this action."""

    exit_code = 7


class DeploymentError(RaymlopsError):
    """Serving could not be started or updated."""

    exit_code = 8


class RetryableError(RaymlopsError):
    """A transient failure: the same command may succeed if run again."""

    exit_code = RETRYABLE_EXIT_CODE
    retryable = True


class PortInUseError(DeploymentError, RetryableError):
    """The HTTP port for Ray Serve is taken by another process."""

    exit_code = RETRYABLE_EXIT_CODE
    retryable = True


class QuotaExceededError(RetryableError):
    """A project's jobs would hold, or hold, more CPUs or GPUs than its quota allows; the
    same job may run once the project's other jobs have released theirs."""

    exit_code = RETRYABLE_EXIT_CODE
    retryable = True


class NotFoundError(RaymlopsError):
    """A model, version, alias or run that the command names does not exist."""

    exit_code = 9


class AwaitingApprovalError(RaymlopsError):
    """Not a failure: the version passed its gates and waits for approvals."""

    exit_code = 0


class TrainingError(RaymlopsError):
    """Training failed for a reason a retry cannot fix: a bad parameter value, a model
    that cannot be built from the data. Infrastructure failures (a worker or node lost)
    are ``RetryableError`` instead."""

    exit_code = 10


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler stopping the job): handled like Ctrl-C, with exit code 143."""


#: Every exit code the CLI uses, and what it tells a scheduler (README, ``--help``).
EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "an unexpected error (traceback in <workdir>/logs/last-error.log)",
    2: "bad config or arguments (the message names the key)",
    3: "bad or unreadable data (validation blocked it, or the source is missing)",
    4: "a gate rejected the model; nothing was registered or deployed",
    5: "the model registry contradicts this run (a conflict to resolve by hand)",
    6: "integrity: a stored artifact or record does not match its digest",
    7: "permission denied",
    8: "deployment failed (Ray Serve could not start or update the application)",
    9: "not found: the model, version, alias or run does not exist",
    10: "training failed permanently (a bad parameter value, a model the data cannot fit)",
    75: "retryable: infrastructure (a port in use, a worker or node lost, a store or "
        "cluster unreachable); the same command may succeed, and --run-id resumes",
    130: "interrupted (Ctrl-C); the run is marked interrupted and --run-id resumes it",
    143: "terminated (SIGTERM); the run is marked interrupted and --run-id resumes it",
}
