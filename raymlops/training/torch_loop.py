"""The PyTorch training loop that runs on each Ray Train worker (``TorchTrainer``).

Data comes from ``get_dataset_shard`` as tensor batches (numeric block, category
codes, label), the model goes through ``prepare_model`` (DDP when there are several
workers), CUDA runs in mixed precision (bfloat16 where the GPU has it, else float16
with a gradient scaler), and training stops early when the validation loss has not
improved for ``patience`` epochs. The weights kept are those of the best epoch.

Every epoch is reported (ASHA needs the intermediate results); every ``report_every``
epochs, and at the end, the report carries a checkpoint with the model, the optimizer,
the RNG state and the history, from which a restarted worker group continues. The final
report also carries ``seconds_data`` (time this attempt's epochs waited for batches) and
``seconds_fit`` (the rest of those epochs: forward, backward, steps, validation), as the
XGBoost loop's final report does; reports and checkpoints are in neither.
"""

from __future__ import annotations

import copy
import json
import random
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from raymlops.features import FittedFeatures
from raymlops.names import LABEL
from raymlops.training.torch_model import WEIGHTS_FILE, ModelSpec, build_model

STATE_FILE = "state.pt"
HISTORY_FILE = "history.json"

_DEFAULTS: dict[str, Any] = {"epochs": 20, "batch_size": 512, "lr": 1e-3, "weight_decay": 1e-5,
                             "hidden": [128, 64], "dropout": 0.1, "patience": 3,
                             "max_embedding_dim": 16, "mixed_precision": True}


def torch_params(params: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(params) - set(_DEFAULTS))
    if unknown:
        from raymlops.errors import ConfigError

        raise ConfigError(f"train.params.{unknown[0]}: unknown for framework 'torch'; "
                          f"expected some of {', '.join(sorted(_DEFAULTS))}")
    return {**_DEFAULTS, **params}


def model_spec(task: str, fitted: FittedFeatures, params: dict[str, Any]) -> ModelSpec:
    return ModelSpec(task=task, n_numeric=max(1, fitted.numeric_width),
                     cardinalities=fitted.cardinalities, hidden=list(params["hidden"]),
                     dropout=float(params["dropout"]),
                     max_embedding_dim=int(params["max_embedding_dim"]))


def tensor_inputs(numeric: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The MLP's inputs from ``FittedFeatures.encode``'s blocks; never zero columns wide
    (Ray's tensor columns need a width): a table without numbers gets one zero column,
    without categories one zero code that no embedding reads."""
    if numeric.shape[1] == 0:
        numeric = np.zeros((len(numeric), 1), dtype=np.float32)
    if codes.shape[1] == 0:
        codes = np.zeros((len(codes), 1), dtype=np.int64)
    return numeric, codes


class ToTensors:
    """Batch function: normalized rows to ``numeric``, ``codes`` and the label, as numpy."""

    def __init__(self, fitted: FittedFeatures) -> None:
        self.fitted = fitted

    def __call__(self, batch: pd.DataFrame) -> dict[str, np.ndarray]:
        numeric, codes = tensor_inputs(*self.fitted.encode(batch, raw=False))
        return {"numeric": numeric, "codes": codes,
                LABEL: batch[LABEL].to_numpy(dtype=np.float32)}


class DataWaits:
    """Seconds a loop spent waiting for batches: starting an iterator and each ``next``.

    Ray Data prepares batches ahead in its own threads; only the time the loop was
    blocked on them counts, not data work that overlapped with training.
    """

    def __init__(self) -> None:
        self.seconds = 0.0

    def timed(self, batches: Iterable[Any]) -> Iterator[Any]:
        clock = time.perf_counter()
        iterator = iter(batches)
        self.seconds += time.perf_counter() - clock
        while True:
            clock = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                self.seconds += time.perf_counter() - clock
                return
            self.seconds += time.perf_counter() - clock
            yield batch


def _metrics(task: str, loss_sum: float, count: float, scores: np.ndarray,
             labels: np.ndarray) -> dict[str, float]:
    if count == 0:
        return {}
    loss = loss_sum / count
    if task == "classification":
        out = {"loss": loss, "logloss": loss}
        if len(np.unique(labels)) == 2:
            from sklearn.metrics import roc_auc_score

            out["auc"] = float(roc_auc_score(labels, scores))
        return out
    return {"loss": loss, "rmse": float(np.sqrt(loss))}


def _all_reduce(values: list[float], device: Any) -> list[float]:
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return [float(v) for v in tensor.tolist()]


def _evaluate(model: Any, shard: Any, task: str, *, batch_size: int, device: Any,
              loss_fn: Any, waits: DataWaits | None = None) -> dict[str, float]:
    """Loss summed over all workers; AUC from this worker's shard of the valid split."""
    import torch

    if shard is None:
        return {}
    model.eval()
    loss_sum, count, scores, labels = 0.0, 0.0, [], []
    batches = shard.iter_torch_batches(batch_size=batch_size, device=device)
    with torch.inference_mode():
        for batch in (batches if waits is None else waits.timed(batches)):
            y = batch[LABEL].float()
            out = model(batch["numeric"], batch["codes"]).float()
            loss_sum += float(loss_fn(out, y).item()) * len(y)
            count += len(y)
            scores.append((torch.sigmoid(out) if task == "classification" else out).cpu().numpy())
            labels.append(y.cpu().numpy())
    loss_sum, count = _all_reduce([loss_sum, count], device)
    return _metrics(task, loss_sum, count,
                    np.concatenate(scores) if scores else np.zeros(0),
                    np.concatenate(labels) if labels else np.zeros(0))


def _optional_shard(name: str) -> Any:
    import ray.train

    try:
        return ray.train.get_dataset_shard(name)
    except KeyError:  # the trainer was given no such dataset
        return None


def _autocast(device: Any, enabled: bool) -> tuple[Any, bool]:
    """(autocast dtype, needs a gradient scaler): mixed precision on CUDA only."""
    import torch

    if not enabled or device.type != "cuda":
        return None, False
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16, False
    return torch.float16, True


def _save(directory: Path, *, spec: ModelSpec, best_state: dict[str, Any],
          state: dict[str, Any], history: dict[str, Any]) -> None:
    import torch

    spec.save(directory)
    torch.save(best_state, directory / WEIGHTS_FILE)
    torch.save(state, directory / STATE_FILE)
    (directory / HISTORY_FILE).write_text(json.dumps(history))


def train_loop_per_worker(config: dict[str, Any]) -> None:  # noqa: PLR0915 - one loop
    """Ray Train entry point: epochs over this worker's shard, resuming from a checkpoint."""
    import ray.train
    import ray.train.torch
    import torch

    params, spec = config["params"], ModelSpec(**config["spec"])
    context = ray.train.get_context()
    rank = context.get_world_rank()
    seed = int(config["seed"])
    random.seed(seed + rank)
    np.random.seed(seed + rank)
    torch.manual_seed(seed + rank)
    torch.set_num_threads(max(1, int(config.get("threads", 1))))
    device = ray.train.torch.get_device()

    model = build_model(spec)
    state: dict[str, Any] | None = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            state = torch.load(Path(directory) / STATE_FILE, map_location="cpu",
                               weights_only=False)
        model.load_state_dict(state["model"])
    model = ray.train.torch.prepare_model(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=float(params["lr"]),
                                  weight_decay=float(params["weight_decay"]))
    amp_dtype, needs_scaler = _autocast(device, bool(params["mixed_precision"]))
    scaler = torch.amp.GradScaler("cuda", enabled=needs_scaler)
    loss_fn = (torch.nn.BCEWithLogitsLoss() if spec.task == "classification"
               else torch.nn.MSELoss())
    bare: Any = model.module if hasattr(model, "module") else model

    history: dict[str, Any] = {"train": {"loss": []}, "valid": {}}
    best_loss, best_state, stale, start_epoch = float("inf"), None, 0, 0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        history, best_loss, best_state = state["history"], state["best_loss"], state["best_state"]
        stale, start_epoch = state["stale"], state["epoch"] + 1
        torch.set_rng_state(state["rng"])
        if needs_scaler and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])

    epochs, batch_size = int(params["epochs"]), int(params["batch_size"])
    every = int(config.get("report_every") or 1)
    train_shard = ray.train.get_dataset_shard("train")
    valid_shard = _optional_shard("valid")
    waits, epochs_seconds = DataWaits(), 0.0  # this attempt's, for the final report
    for epoch in range(start_epoch, epochs):
        clock = time.perf_counter()
        model.train()
        loss_sum, count = 0.0, 0.0
        for batch in waits.timed(train_shard.iter_torch_batches(
                batch_size=batch_size, device=device, local_shuffle_seed=seed + epoch,
                local_shuffle_buffer_size=batch_size * 8)):
            y = batch[LABEL].float()
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                out = model(batch["numeric"], batch["codes"])
            loss = loss_fn(out.float(), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            loss_sum += float(loss.detach().item()) * len(y)
            count += len(y)
        loss_sum, count = _all_reduce([loss_sum, count], device)
        history["train"]["loss"].append(loss_sum / max(count, 1.0))
        valid = _evaluate(model, valid_shard, spec.task, batch_size=batch_size, device=device,
                          loss_fn=loss_fn, waits=waits)
        for name, value in valid.items():
            history["valid"].setdefault(name, []).append(value)
        watched = valid.get("loss", history["train"]["loss"][-1])
        if watched < best_loss - 1e-7:
            best_loss, stale = watched, 0
            best_state = {k: v.detach().cpu().clone() for k, v in bare.state_dict().items()}
        else:
            stale += 1
        stop = stale >= int(params["patience"])
        final = stop or epoch == epochs - 1
        epochs_seconds += time.perf_counter() - clock
        metrics = {"epoch": epoch + 1, "final": int(final), "best_valid_loss": best_loss,
                   "resumed_from_epoch": start_epoch,
                   "train_loss": history["train"]["loss"][-1],
                   **{f"valid_{k}": v for k, v in valid.items()}}
        if final:  # only here, so the per-epoch reports that Tune compares are unchanged
            metrics.update(seconds_data=waits.seconds,
                           seconds_fit=epochs_seconds - waits.seconds)
        with tempfile.TemporaryDirectory() as tmp:
            attached = None
            if rank == 0 and (final or (epoch + 1) % every == 0):
                _save(Path(tmp), spec=spec, best_state=best_state or bare.state_dict(),
                      history=history,
                      state={"model": copy.deepcopy(bare.state_dict()),
                             "optimizer": optimizer.state_dict(), "epoch": epoch,
                             "history": history, "best_loss": best_loss,
                             "best_state": best_state, "stale": stale,
                             "rng": torch.get_rng_state(),
                             "scaler": scaler.state_dict() if needs_scaler else None})
                attached = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=attached)
        if stop:
            break
