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


def test_tune_search_space_is_validated_with_the_key_named():
    import pytest

    from raymlops.errors import ConfigError

    base = {"data": {"source": "x", "target": "y", "task": "classification"},
            "deploy": {"name": "m"}}
    ok = load_config({**base, "train": {"framework": "torch", "tune": {
        "search_space": {"lr": {"loguniform": [1e-4, 1e-2]}, "hidden": {"choice": [[64], [128]]}},
        "num_samples": 4, "max_concurrent": 2}}})
    assert ok.train.tune is not None and ok.train.tune.scheduler.type == "asha"
    with pytest.raises(ConfigError, match=r"train\.tune\.search_space\.lr"):
        load_config({**base, "train": {"framework": "torch", "tune": {
            "search_space": {"lr": {"loguniform": [0.0, 1.0]}}}}})
    with pytest.raises(ConfigError, match=r"train\.tune\.search_space\.depth.*exactly one"):
        load_config({**base, "train": {"framework": "xgboost", "tune": {
            "search_space": {"depth": {"choice": [2], "randint": [1, 3]}}}}})
    with pytest.raises(ConfigError, match=r"train\.tune\.num_samples"):
        load_config({**base, "train": {"framework": "xgboost", "tune": {
            "search_space": {"eta": {"uniform": [0.1, 0.2]}}, "num_samples": 0}}})
    with pytest.raises(ConfigError, match=r"train\.framework"):
        load_config({**base, "train": {"framework": "lightgbm"}})


def test_search_space_maps_to_ray_tune_domains():
    from ray import tune

    from raymlops.config import SearchDimension
    from raymlops.training.tune import search_space

    space = search_space({"a": SearchDimension(randint=(2, 4)),
                          "b": SearchDimension(grid=[1, 2])})
    assert isinstance(space["a"], tune.search.sample.Integer)
    assert space["a"].upper == 5  # inclusive as written in the config
    assert space["b"] == {"grid_search": [1, 2]}


def test_torch_params_reject_unknown_keys_and_fill_defaults():
    import pytest

    from raymlops.errors import ConfigError
    from raymlops.training.torch_loop import torch_params

    params = torch_params({"epochs": 3})
    assert params["epochs"] == 3 and params["batch_size"] == 512 and params["patience"] == 3
    with pytest.raises(ConfigError, match=r"train\.params\.learning_rate"):
        torch_params({"learning_rate": 0.1})


def test_mlp_embeds_categories_and_uses_the_shared_encoding():
    from raymlops.data.features import fit_frames
    from raymlops.training.torch_loop import model_spec, tensor_inputs, torch_params
    from raymlops.training.torch_model import build_model, predict

    frame = pd.DataFrame({"x": [1.0, 2.0, None, 4.0], "c": ["a", "b", "a", None]})
    fitted = fit_frames([frame], ["x"], ["c"])
    spec = model_spec("classification", fitted, torch_params({}))
    assert spec.cardinalities == [len(fitted.vocab["c"]) + 1]  # + the unknown bucket
    assert spec.n_numeric == 2  # x and its missing indicator
    numeric, codes = tensor_inputs(fitted, pd.DataFrame({"x": [3.0], "c": ["never seen"]}))
    assert codes[0, 0] == len(fitted.vocab["c"])  # the unknown bucket
    # the one-hot matrix for XGBoost is built from the very same codes
    onehot = fitted.transform(pd.DataFrame({"x": [3.0], "c": ["never seen"]}))
    assert onehot[0, numeric.shape[1] + codes[0, 0]] == 1.0
    out = predict(build_model(spec).eval(), spec, numeric, codes)
    assert out.shape == (1,) and 0.0 < out[0] < 1.0


def test_xgboost_history_of_a_resumed_fit_is_continuous():
    from raymlops.training.xgboost_loop import merge_history

    before = {"valid": {"auc": [0.6, 0.7]}}
    merged = merge_history(before, {"valid": {"auc": [0.75]}, "train": {"auc": [0.9]}})
    assert merged == {"valid": {"auc": [0.6, 0.7, 0.75]}, "train": {"auc": [0.9]}}
    assert before == {"valid": {"auc": [0.6, 0.7]}}  # not mutated
