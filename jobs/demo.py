"""`ray job submit` entry point for the demo: makes the demo data and runs the whole flow.

    ray job submit --address http://HEAD:8265 --working-dir . \
        --runtime-env cluster/runtime_env.yaml -- python jobs/demo.py --workdir /shared/raymlops
"""

from __future__ import annotations

import sys

from raymlops.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
