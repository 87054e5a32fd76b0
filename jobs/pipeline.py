"""`ray job submit` entry point for one pipeline run.

    ray job submit --address http://HEAD:8265 --working-dir . \
        --runtime-env cluster/runtime_env.yaml -- python jobs/pipeline.py configs/demo.yaml

Arguments are those of ``raymlops run``. Inside a job Ray sets RAY_ADDRESS, so the
driver attaches to the cluster instead of starting one. Exit code: 0 success, 75 for a
retryable failure, other non-zero codes as documented in ``raymlops.cli``.
"""

from __future__ import annotations

import sys

from raymlops.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
