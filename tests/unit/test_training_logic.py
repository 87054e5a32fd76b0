"""Training logic without a cluster: parameters, the GPU switch, the per-worker fit,
early stopping that survives a resume, and the Ray run names."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raymlops.config import load_config
from raymlops.training.xgboost_loop import (
    LABEL,
    Resumed,
    fit_booster,
    fit_resumable,
    load_checkpoint,
    save_checkpoint,
    xgboost_params,
)


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
    booster, history = fit_booster(frame[:1500], frame[1500:], params, 20)
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
    from raymlops.features import RowSpec, fit_frames
    from raymlops.training.torch_loop import model_spec, tensor_inputs, torch_params
    from raymlops.training.torch_model import build_model, predict

    frame = pd.DataFrame({"x": [1.0, 2.0, None, 4.0], "c": ["a", "b", "a", None]})
    fitted = fit_frames([frame], RowSpec(numeric=["x"], categorical=["c"]))
    spec = model_spec("classification", fitted, torch_params({}))
    assert spec.cardinalities == [len(fitted.vocab["c"]) + 1]  # + the unknown bucket
    assert spec.n_numeric == 2  # x and its missing indicator
    row = pd.DataFrame({"x": [3.0], "c": ["never seen"]})
    numeric, codes = tensor_inputs(*fitted.encode(row, raw=True))
    assert codes[0, 0] == len(fitted.vocab["c"])  # the unknown bucket
    # the one-hot matrix for XGBoost is built from the very same codes
    onehot = fitted.transform(row, raw=True)
    assert onehot[0, numeric.shape[1] + codes[0, 0]] == 1.0
    out = predict(build_model(spec).eval(), spec, numeric, codes)
    assert out.shape == (1,) and 0.0 < out[0] < 1.0


def test_xgboost_history_of_a_resumed_fit_is_continuous():
    from raymlops.training.xgboost_loop import merge_history

    before = {"valid": {"auc": [0.6, 0.7]}}
    merged = merge_history(before, {"valid": {"auc": [0.75]}, "train": {"auc": [0.9]}})
    assert merged == {"valid": {"auc": [0.6, 0.7, 0.75]}, "train": {"auc": [0.9]}}
    assert before == {"valid": {"auc": [0.6, 0.7]}}  # not mutated


# -- early stopping that a resume continues exactly ------------------------------------


def _frames(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3000, 5))
    frame = pd.DataFrame(x, columns=list("abcde"))
    frame[LABEL] = (x[:, 0] + rng.normal(size=3000) > 0).astype(float)
    return frame[:2000], frame[2000:]


def _loop_config(rounds: int = 200, early: int | None = 3, every: int = 0) -> dict:
    params, _, _ = xgboost_params("classification", {"eta": 0.3}, seed=1, use_gpu=False,
                                  nthread=1)
    return {"params": params, "rounds": rounds, "early_stopping": early,
            "report_every": every}


class Recorder:
    """Stands in for Ray Train's report: keeps every report and writes its checkpoint."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.reports: list[dict] = []

    def __call__(self, booster, history, state, metrics) -> None:
        directory = self.root / f"checkpoint_{len(self.reports)}"
        directory.mkdir(parents=True)
        save_checkpoint(directory, booster, history, state)
        self.reports.append({"metrics": metrics, "dir": directory, "state": state})


def test_seeded_callback_stops_a_resumed_fit_where_an_uninterrupted_one_stops(tmp_path):
    """XGBoost's rule on the whole history: the same stop round and best iteration."""
    import xgboost

    from raymlops.training.xgboost_loop import early_stop_callback

    train, valid = _frames()
    config = _loop_config()
    whole, whole_history = fit_booster(train, valid, config["params"], 200,
                                       callbacks=[early_stop_callback(3, {})])
    # xgboost's own early stopping agrees on a fresh fit
    own, _ = fit_booster(train, valid, config["params"], 200,
                         callbacks=[xgboost.callback.EarlyStopping(rounds=3, maximize=True)])
    assert (whole.best_iteration, whole.num_boosted_rounds()) == (
        own.best_iteration, own.num_boosted_rounds())
    stop_round = whole.num_boosted_rounds()
    assert stop_round < 200 and stop_round == whole.best_iteration + 1 + 3
    # fit_booster's early_stopping argument (benchmarks, scripts) is the same callback
    plain, _ = fit_booster(train, valid, config["params"], 200, 3)
    assert plain.num_boosted_rounds() == stop_round
    # interrupted after the best iteration but before the stop, then resumed: the
    # patience already spent counts (xgboost's own callback would start it afresh)
    cut = whole.best_iteration + 2
    first, first_history = fit_booster(train, valid, config["params"], cut)
    save_checkpoint(tmp_path, first, first_history, {})
    resumed = load_checkpoint(tmp_path)
    callback = early_stop_callback(3, resumed.history)
    second, second_history = fit_booster(train, valid, config["params"], 200 - cut,
                                         callbacks=[callback], start=resumed.booster)
    assert second.num_boosted_rounds() == stop_round
    assert second.best_iteration == whole.best_iteration
    assert callback.state.best_iteration == whole.best_iteration
    assert callback.state.stopped
    merged = first_history["valid"]["auc"] + second_history["valid"]["auc"]
    assert merged == whole_history["valid"]["auc"]


def test_loop_resumed_from_an_early_stop_boosts_no_more_rounds(tmp_path):
    train, valid = _frames()
    fresh = Recorder(tmp_path / "fresh")
    metrics = fit_resumable(train, valid, _loop_config(), Resumed(), fresh)
    assert metrics["stopped_early"] == 1 and metrics["rounds"] < 200
    best = metrics["best_iteration"]
    assert metrics["rounds"] == best + 1 + 3
    history = json.loads((fresh.reports[-1]["dir"] / "history.json").read_text())
    # the reported metrics are the best iteration's; the last round's are kept apart
    assert metrics["valid_logloss"] == history["valid"]["logloss"][best]
    assert metrics["last_valid_logloss"] == history["valid"]["logloss"][-1]
    # the watched metric is the last eval_metric (auc, maximized): the best is its peak
    assert metrics["valid_auc"] == max(history["valid"]["auc"])
    assert history["valid"]["auc"].index(metrics["valid_auc"]) == best
    assert metrics["last_valid_auc"] < metrics["valid_auc"]
    state = fresh.reports[-1]["state"]
    assert state["stopped_early"] and state["best_iteration"] == best
    assert state["metric"] == "valid_auc" and state["maximize"] is True

    again = Recorder(tmp_path / "again")
    resumed = fit_resumable(train, valid, _loop_config(),
                            load_checkpoint(fresh.reports[-1]["dir"]), again)
    assert resumed["rounds"] == metrics["rounds"]  # 0 rounds boosted after the stop
    assert resumed["resumed_from_round"] == metrics["rounds"]
    assert resumed["best_iteration"] == best
    assert resumed["valid_logloss"] == metrics["valid_logloss"]


def test_loop_resumed_from_a_mid_run_checkpoint_matches_an_uninterrupted_run(tmp_path):
    train, valid = _frames()
    calm = fit_resumable(train, valid, _loop_config(), Resumed(), Recorder(tmp_path / "a"))
    every = 2
    ticks = Recorder(tmp_path / "b")
    fit_resumable(train, valid, _loop_config(every=every), Resumed(), ticks)
    assert len(ticks.reports) >= 2
    middle = ticks.reports[-2]  # a checkpoint written before the stop
    assert middle["metrics"]["final"] == 0 and not middle["state"]["stopped_early"]
    resumed = fit_resumable(train, valid, _loop_config(every=every),
                            load_checkpoint(middle["dir"]), Recorder(tmp_path / "c"))
    assert resumed["resumed_from_round"] == middle["metrics"]["rounds"] > 0
    for key in ("rounds", "best_iteration", "stopped_early", "valid_logloss", "valid_auc"):
        assert resumed[key] == calm[key], key


def test_old_checkpoint_without_state_is_judged_from_its_history(tmp_path):
    train, valid = _frames()
    fresh = Recorder(tmp_path / "fresh")
    metrics = fit_resumable(train, valid, _loop_config(), Resumed(), fresh)
    (fresh.reports[-1]["dir"] / "state.json").unlink()
    resumed = fit_resumable(train, valid, _loop_config(),
                            load_checkpoint(fresh.reports[-1]["dir"]), Recorder(tmp_path / "b"))
    assert resumed["rounds"] == metrics["rounds"]


def test_without_early_stopping_every_round_is_boosted_and_reported():
    train, valid = _frames()
    reports = []
    metrics = fit_resumable(train, valid, _loop_config(rounds=12, early=None), Resumed(),
                            lambda *args: reports.append(args))
    assert metrics["rounds"] == 12 and "best_iteration" not in metrics
    assert not any(k.startswith("last_") for k in metrics)
    assert reports[-1][2]["best_iteration"] is None


def test_negative_early_stopping_rounds_is_a_config_error():
    from raymlops.errors import ConfigError

    with pytest.raises(ConfigError, match=r"train\.params\.early_stopping_rounds"):
        xgboost_params("classification", {"early_stopping_rounds": -1}, seed=0,
                       use_gpu=False, nthread=1)
    assert xgboost_params("classification", {"early_stopping_rounds": 0}, seed=0,
                          use_gpu=False, nthread=1)[2] is None


# -- Ray run names follow the stage's inputs ---------------------------------------------


def _key(config) -> str:
    return hashlib.sha256(config.model_dump_json().encode()).hexdigest()


def test_run_names_change_when_a_param_changes():
    from raymlops.training.train import run_name

    def config(depth: int):
        return load_config({"data": {"source": "x", "target": "y", "task": "classification"},
                            "train": {"framework": "xgboost", "params": {"max_depth": depth}},
                            "deploy": {"name": "m"}})

    six, eight = _key(config(6)), _key(config(8))
    assert run_name("train", "r1", six) != run_name("train", "r1", eight)
    assert run_name("tune", "r1", six) != run_name("tune", "r1", eight)
    assert run_name("train", "r1", six) == run_name("train", "r1", _key(config(6)))
    assert run_name("train", "r1", six) == f"train-r1-{six[:12]}"
    assert run_name("tune", "r1", "sha256:" + six) == f"tune-r1-{six[:12]}"
    with pytest.raises(ValueError, match="attempt_key"):
        run_name("train", "r1", "")
    with pytest.raises(ValueError, match="attempt_key"):
        run_name("train", "r1", "../../elsewhere")


# -- a Tune experiment is restored only with the settings it was started with ----------


def _tune_config(**tune):
    settings = {"search_space": {"eta": {"uniform": [0.1, 0.3]}}, "num_samples": 4, **tune}
    return load_config({"data": {"source": "x", "target": "y", "task": "classification"},
                        "train": {"framework": "xgboost", "params": {"num_boost_round": 20},
                                  "tune": settings},
                        "deploy": {"name": "m"}})


def _wanted(config, sources=None):
    from raymlops.training.trainer import Plan
    from raymlops.training.tune import tune_settings

    plan = Plan(config, None, dict(config.train.params), Path("unused"))
    plan.sources = sources or {"train": {"path": "/d/train", "rows": 10, "bytes": 100}}
    return tune_settings(plan, config.train.tune, "valid_logloss", "min")


def test_restore_decision():
    from raymlops.training.tune import restore_decision

    wanted = {"a": 1}
    assert restore_decision(wanted, wanted, exists=True, restorable=True) == "restore"
    assert restore_decision(wanted, wanted, exists=True, restorable=False) == "new"
    assert restore_decision(None, wanted, exists=False, restorable=False) == "new"
    assert restore_decision({"a": 2}, wanted, exists=True, restorable=True) == "elsewhere"
    # a folder without our record (an older raymlops, a foreign experiment): not restored
    assert restore_decision(None, wanted, exists=True, restorable=True) == "elsewhere"


@pytest.mark.parametrize("change", [
    {"num_samples": 8},
    {"search_space": {"eta": {"uniform": [0.1, 0.5]}}},
    {"search_space": {"eta": {"uniform": [0.1, 0.3]}, "max_depth": {"randint": [2, 6]}}},
    {"scheduler": {"type": "fifo"}},
    {"scheduler": {"grace_period": 3}},
    {"metric": "valid_auc"},
])
def test_changed_tuning_settings_are_never_restored(tmp_path, change):
    from raymlops.training.tune import SETTINGS_FILE, choose_experiment

    before, after = _wanted(_tune_config()), _wanted(_tune_config(**change))
    assert before != after
    folder = tmp_path / "tune-r1-abc"
    folder.mkdir()
    (folder / SETTINGS_FILE).write_text(json.dumps(before))
    always = lambda _path: True  # noqa: E731 - Tune would say it can restore
    assert choose_experiment(tmp_path, "tune-r1-abc", before, always) == ("tune-r1-abc", True)
    name, restore = choose_experiment(tmp_path, "tune-r1-abc", after, always)
    assert name != "tune-r1-abc" and name.startswith("tune-r1-abc-s") and not restore
    # and that new experiment is the one a later rerun with the new settings restores
    (tmp_path / name).mkdir()
    (tmp_path / name / SETTINGS_FILE).write_text(json.dumps(after))
    assert choose_experiment(tmp_path, "tune-r1-abc", after, always) == (name, True)


def test_changed_base_params_or_data_are_never_restored():
    base = _tune_config()
    assert _wanted(base) != _wanted(base, {"train": {"path": "/d/train", "rows": 11,
                                                     "bytes": 100}})
    other = load_config({**base.model_dump(mode="json", by_alias=True),
                         "train": {**base.train.model_dump(mode="json"),
                                   "params": {"num_boost_round": 40}}})
    assert _wanted(base) != _wanted(other)
    assert _wanted(base) == _wanted(_tune_config())  # deterministic
