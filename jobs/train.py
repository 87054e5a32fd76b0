"""`ray job submit` entry point for the train stage: fits the model on Ray Train (and Tune
when train.tune is set).

    ray job submit --address http://HEAD:8265 --working-dir . \
        --runtime-env cluster/runtime_env.yaml -- \
        python jobs/train.py CONFIG --run-id RUN --workdir /shared/raymlops

It runs the pipeline up to and including train under that run id: stages an earlier job
already ran are reused (their inputs' digests match), so one job per stage chains into
one run, as a workflow engine (Argo Workflows, Airflow) schedules it. Arguments are those
of `raymlops run`. Exit code: 0 success, 75 for a retryable failure (resubmit the same
command), other non-zero codes are permanent (`raymlops --help` lists them).
"""

from __future__ import annotations

import sys

from raymlops.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "--until", "train", *sys.argv[1:]]))
