"""`ray job submit` entry point for rolling a version out to an environment.

    ray job submit --address http://HEAD:8265 --working-dir . \
        --runtime-env cluster/runtime_env.yaml -- \
        python jobs/rollout.py churn 3 --to production --config configs/team.yaml --as carol

Until progressive delivery lands, a rollout is a promotion (``raymlops promote``): the
version takes the environment's traffic once its gates against what the environment
serves now and its approvals pass, with a change record and an audit entry. Arguments
are those of ``raymlops promote``. Exit codes as for ``jobs/pipeline.py``: a refusal
(gates, approvals, another project's model) is permanent; 75 can be resubmitted.
"""

from __future__ import annotations

import sys

from raymlops.cli import main

if __name__ == "__main__":
    sys.exit(main(["promote", *sys.argv[1:]]))
