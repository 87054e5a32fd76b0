"""`ray job submit` entry point for returning an environment to the version it served
before its last deployment or promotion.

    ray job submit --address http://HEAD:8265 --working-dir . \
        --runtime-env cluster/runtime_env.yaml -- \
        python jobs/rollback.py churn --env production --config configs/team.yaml

Arguments are those of ``raymlops rollback``. Exit codes as for ``jobs/pipeline.py``.
"""

from __future__ import annotations

import sys

from raymlops.cli import main

if __name__ == "__main__":
    sys.exit(main(["rollback", *sys.argv[1:]]))
