"""`ray job submit` entry point for retraining a registered version from its records.

    ray job submit --address http://HEAD:8265 --working-dir . \
        --runtime-env cluster/runtime_env.yaml -- \
        python jobs/retrain.py churn@champion --config configs/my-team.yaml

Arguments are those of ``raymlops retrain``; ``--config`` names the team's tracking
server and lineage store. Exit codes as for ``jobs/pipeline.py``.
"""

from __future__ import annotations

import sys

from raymlops.cli import main

if __name__ == "__main__":
    sys.exit(main(["retrain", *sys.argv[1:]]))
