"""Training logic without a cluster: parameters, the GPU switch, the per-worker fit."""

from __future__ import annotations

import numpy as np
import pandas as pd

from raymlops.config import load_config
from raymlops.training.xgboost_loop import LABEL, fit_booster, xgboost_params


def test_defaults_follow_the_task_and_user_params_win():
    params, rounds, early = xgboost_params("classification", {"max_depth": 3,
                                           "num_boost_round": 12, "early_stopping_rounds": 4},
                                           seed=7, use_gpu=False, nthread=2)
    assert params["objective"] == "binary:logistic" and params["max_depth"] == 3
    assert params["seed"] == 7 and params["nthread"] == 2
    assert (rounds, early) == (12, 4)
    assert "device" not in params
    reg, _, _ = xgboost_params("regression", {}, seed=0, use_gpu=False, nthread=1)
    assert reg["objective"] == "reg:squarederror" and reg["eval_metric"] == ["rmse"]


def test_use_gpu_switches_xgboost_to_cuda_and_asks_ray_for_gpus():
    from raymlops.training.trainer import scaling_config

    params, _, _ = xgboost_params("classification", {}, seed=0, use_gpu=True, nthread=1)
    assert params["device"] == "cuda"
    config = load_config({
        "data": {"source": "x", "target": "y", "task": "classification"},
        "train": {"framework": "xgboost",
                  "scaling": {"num_workers": 2, "use_gpu": True, "gpus_per_worker": 0.5}},
        "deploy": {"name": "m"}})
    scaling = scaling_config(config)
    assert scaling.use_gpu and scaling.num_workers == 2
    assert scaling.resources_per_worker == {"CPU": 1.0, "GPU": 0.5}


def test_fit_booster_learns_and_keeps_the_per_round_history():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 3))
    frame = pd.DataFrame(x, columns=["a", "b", "c"])
    frame[LABEL] = (x[:, 0] + 0.3 * rng.normal(size=2000) > 0).astype(float)
    params, _, _ = xgboost_params("classification", {}, seed=0, use_gpu=False, nthread=1)
    booster, history = fit_booster(frame[:1500], frame[1500:], params, 20, None)
    assert len(history["valid"]["auc"]) == 20
    assert history["valid"]["auc"][-1] > 0.9
    assert booster.feature_names == ["a", "b", "c"]
