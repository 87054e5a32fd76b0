"""`ray job submit` entry point for a drift report between two tables (JSON + HTML).

    ray job submit --address http://HEAD:8265 --working-dir . \
        --runtime-env cluster/runtime_env.yaml -- \
        python jobs/drift.py --reference REF.parquet --current CUR.parquet --config CONFIG

Arguments are those of `raymlops drift`. Exit code: 0 success, 75 for a retryable
failure, other non-zero codes are permanent (`raymlops --help` lists them).
"""

from __future__ import annotations

import sys

from raymlops.cli import main

if __name__ == "__main__":
    sys.exit(main(["drift", *sys.argv[1:]]))
