"""The ``raymlops`` command: one module per command group, assembled here.

- ``run``: ``demo``, ``run``, ``retrain`` (the pipeline);
- ``governance``: ``approve``, ``promote``, ``rollback``, ``changes``, ``audit verify``;
- ``inspect``: ``lineage``, ``status`` (questions to the lineage store);
- ``quality``: ``evaluate`` (a registered version on a labelled table);
- ``serving``: ``serve`` (a registered model in the foreground), ``export-serve``;
- ``data``: ``schema``, ``drift`` (tables);
- ``usage``: ``usage`` (CPU- and GPU-hours per project, model and day), ``quota``
  (the platform's quota per project).

Failures print one line; the traceback of an unexpected error goes to
``<workdir>/logs/last-error.log``. Exit codes are listed in ``raymlops --help`` and in
``raymlops.errors.EXIT_CODES``; they tell a scheduler whether a retry can help.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback
from types import FrameType

from raymlops.cli import data, governance, inspect, quality, run, serving, usage
from raymlops.cli._common import setup_logging
from raymlops.errors import EXIT_CODES, RaymlopsError, Terminated
from raymlops.workspace import Workspace

GROUPS = (run, quality, serving, governance, inspect, data, usage)


def build_parser() -> argparse.ArgumentParser:
    codes = "\n".join(f"  {code:>3}  {meaning}" for code, meaning in EXIT_CODES.items())
    parser = argparse.ArgumentParser(
        prog="raymlops", description="The whole MLOps loop on Ray: data, training, "
        "registry, serving, lineage and drift.", epilog=f"exit codes:\n{codes}",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.add_commands(sub)
    return parser


#: the signal _terminate saw in this main(): Ray's get turns any KeyboardInterrupt raised
#: while it waits (Terminated included) into a plain one, so the type alone cannot tell
_RECEIVED: list[int] = []


def _terminate(signum: int, frame: FrameType | None) -> None:
    _RECEIVED.append(signum)
    raise Terminated(f"received signal {signal.Signals(signum).name}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from raymlops._internal.ray_runtime import set_ray_auth_mode

    set_ray_auth_mode()
    previous = signal.getsignal(signal.SIGTERM)
    _RECEIVED.clear()
    try:
        signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread (an embedding application)
        previous = None
    try:
        return int(args.handler(args))
    except RaymlopsError as exc:
        print(f"raymlops: {exc.headline()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        if _RECEIVED:  # _terminate ran, whatever became of its Terminated
            print(f"raymlops: terminated (received signal {signal.Signals(_RECEIVED[0]).name}"
                  "); the run is marked interrupted", file=sys.stderr)
            return 143
        print("raymlops: interrupted; the run is marked interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `raymlops ... | head`: the reader left; not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as exc:  # noqa: BLE001 - last resort: one line here, traceback in a file
        path = Workspace.at(getattr(args, "workdir", None)).root / "logs" / "last-error.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(traceback.format_exc())
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(f"raymlops: unexpected {type(exc).__name__}: {first} (traceback in {path})",
              file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


__all__ = ["build_parser", "main"]
